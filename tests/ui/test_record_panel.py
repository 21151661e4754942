"""The record panel's status line: overflows and the gaps a recorder filled with silence."""

from __future__ import annotations

from studio.engine.audio.recorder import RecordingGap
from studio.ui.panels.record import RecordPanel


def test_status_line_counts_gaps_and_lists_them_in_its_tooltip(qtbot):
    panel = RecordPanel()
    qtbot.addWidget(panel)
    panel.show_status(1.5, 0)
    assert panel.overflows.text() == "overflows 0   gaps 0"
    assert "Gaps" not in panel.overflows.toolTip()
    gaps = (
        RecordingGap(2.25, 0.4, "stopped"),
        RecordingGap(7.5, 1.25, "delivered nothing for 3 s"),
    )
    panel.show_status(9.0, 3, gaps)
    assert panel.overflows.text() == "overflows 3   gaps 2"
    assert panel.elapsed.text() == "00:09.000"
    tip = panel.overflows.toolTip()
    assert "at 00:02.250: 0.40 s of silence (stopped)" in tip
    assert "at 00:07.500: 1.25 s of silence (delivered nothing for 3 s)" in tip
