"""The installed Qt binding keeps its reference counts: PySide6 6.12.0 dropped a reference to True on
every signal emit, which aborts Python 3.11 after a few minutes of playback (studio/ui/qt_binding.py).
pyproject.toml excludes that version; this fails if an installed one has the defect."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("PySide6")


def test_signal_emits_keep_the_reference_count_of_true():
    from studio.ui.qt_binding import binding_problem, emit_loses_references

    assert emit_loses_references(2000) == 0, "this Qt binding drops references on emit: see studio/ui/qt_binding.py"
    assert binding_problem() is None


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True is immortal from Python 3.12 on: nothing to count")
def test_the_probe_counts_references_that_are_dropped(monkeypatch):
    """Pure logic: the probe reports what ``sys.getrefcount`` says was lost (checked with a stand-in)."""
    from studio.ui import qt_binding

    counts = iter([5000, 5000 - qt_binding.PROBE_EMITS])
    monkeypatch.setattr(qt_binding.sys, "getrefcount", lambda obj: next(counts))
    assert qt_binding.emit_loses_references() == qt_binding.PROBE_EMITS
    counts = iter([5000, 5000 - qt_binding.PROBE_EMITS])
    assert "crash" in qt_binding.binding_problem()
