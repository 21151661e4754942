"""A check of the Qt binding for a known fatal defect: PySide6 6.12.0's ``SignalInstance.emit`` drops
a reference to ``True`` on every call (measured here: −1 per emit; 6.11.3 keeps it).

On Python 3.11, where ``True`` is an ordinary reference-counted object, the studio emits enough
signals (pyqtgraph emits several per playhead move) to use up the ~16 000 references a started
studio holds within about two minutes of playback, and the interpreter then aborts ("bool_dealloc:
deallocating True or False"). Python 3.12 and later make ``True`` immortal, so the defect is harmless
there. ``pyproject.toml`` excludes 6.12.0; ``emit_loses_references`` probes whatever is installed,
so the window can say so before it crashes. GUI thread (or any thread, before the window exists).
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

PROBE_EMITS = 64
ADVICE = "pip install 'PySide6-Essentials!=6.12.0' (scripts/setup installs a good version)"


class _Probe(QObject):
    fired = Signal(object)


def emit_loses_references(emits: int = PROBE_EMITS) -> int:
    """References to ``True`` lost over ``emits`` signal emissions (0 for a sound binding, or
    where ``True`` is immortal)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(emits):
        probe.fired.emit(None)
    lost = before - sys.getrefcount(True)
    return max(0, lost)


def binding_problem() -> str | None:
    """A message for the person when the installed binding has the defect, else None."""
    lost = emit_loses_references()
    if lost < PROBE_EMITS // 2:
        return None
    import PySide6

    return (
        f"PySide6 {PySide6.__version__} loses a reference to True on every Qt signal ({lost} in "
        f"{PROBE_EMITS} emits): on Python {sys.version_info.major}.{sys.version_info.minor} the studio will "
        f"crash after a few minutes of playing or recording. Install another version: {ADVICE}"
    )
