"""The record panel: input device, live level meter with peak hold and clip lamp, live waveform,
record/stop (R), elapsed time, overflow and gap counts. Widgets only (GUI thread): the window drives
the recorder and feeds these from its 30 Hz poll."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.ui import theme
from studio.ui.timefmt import format_time
from studio.ui.widgets.common import set_combo_items
from studio.ui.widgets.meter import LevelMeter

LIVE_WAVEFORM_S = 3.0  # seconds of recent input the live waveform shows
GAPS_IN_TOOLTIP = 8  # the latest gaps listed in the status line's tooltip
OVERFLOWS_TIP = "Times input audio was lost: the writer fell behind, the device overflowed, or the stream died"


class RecordPanel(QWidget):
    """Emits ``recordToggled()`` (start or stop) and ``inputDeviceChosen(name)``."""

    recordToggled = Signal()
    inputDeviceChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.input_device = QComboBox()
        self.input_device.setToolTip("Input device")
        self.input_device.activated.connect(lambda _i: self.inputDeviceChosen.emit(self.input_device.currentText()))
        self.meter = LevelMeter()
        self.level_text = QLabel("")
        self.level_text.setFont(theme.monospace_font())
        self.level_text.setObjectName("dim")
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(90)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.hideAxis("bottom")
        self.plot.getAxis("left").setWidth(28)
        self.plot.setYRange(-1.0, 1.0, padding=0.02)
        self.plot.setXRange(-LIVE_WAVEFORM_S, 0.0, padding=0)
        self.curve = self.plot.plot(pen=pg.mkPen(theme.ACCENT, width=1))
        self.record_button = QPushButton("● Record")
        self.record_button.setObjectName("primary")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("Start / stop recording (R)")
        self.record_button.clicked.connect(lambda _checked: self.recordToggled.emit())
        self.elapsed = QLabel(format_time(0.0))
        self.elapsed.setFont(theme.monospace_font(12))
        self.elapsed.setObjectName("readout")
        self.overflows = QLabel("overflows 0   gaps 0")
        self.overflows.setFont(theme.monospace_font())
        self.overflows.setObjectName("dim")
        self.overflows.setToolTip(OVERFLOWS_TIP)

        device_row = QHBoxLayout()
        caption = QLabel("input")
        caption.setObjectName("dim")
        device_row.addWidget(caption)
        device_row.addWidget(self.input_device, 1)
        controls = QHBoxLayout()
        controls.addWidget(self.record_button)
        controls.addStretch(1)
        controls.addWidget(self.elapsed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(device_row)
        layout.addWidget(self.meter)
        layout.addWidget(self.level_text)
        layout.addWidget(self.plot, 1)
        layout.addLayout(controls)
        layout.addWidget(self.overflows)

    def set_devices(self, names: list[str], current: str) -> None:
        set_combo_items(self.input_device, names, current)

    def set_recording(self, recording: bool) -> None:
        self.record_button.setChecked(recording)
        self.record_button.setText("■ Stop" if recording else "● Record")
        self.input_device.setEnabled(not recording)

    def show_levels(self, peak_db: float, rms_db: float, hold_db: float, clipped: bool) -> None:
        self.meter.set_levels(peak_db, rms_db, hold_db, clipped)
        clip = "  CLIP" if clipped else ""
        self.level_text.setText(f"peak {peak_db:6.1f}  rms {rms_db:6.1f}  hold {hold_db:6.1f} dBFS{clip}")

    def show_status(self, elapsed_s: float, overflows: int, gaps: Sequence[Any] = ()) -> None:
        """Elapsed time, overflow count and ``gaps`` (the recorder's ``RecordingGap``s: spans lost while
        the input stream was reopened or the writer fell behind, held as silence in the file; each also
        counts once in ``overflows``)."""
        self.elapsed.setText(format_time(elapsed_s))
        text = f"overflows {overflows}   gaps {len(gaps)}"
        if self.overflows.text() == text:
            return
        self.overflows.setText(text)
        tip = OVERFLOWS_TIP
        if gaps:
            listed = "\n".join(
                f"at {format_time(g.start_s)}: {g.duration_s:.2f} s of silence ({g.reason})"
                for g in list(gaps)[-GAPS_IN_TOOLTIP:]
            )
            tip += f".\nGaps (the input stream was reopened, or the disk fell behind; silence in the file):\n{listed}"
        self.overflows.setToolTip(tip)

    def show_recent(self, samples: np.ndarray, sample_rate: int) -> None:
        """Draw the last seconds of input (float32 [n] or [n, ch]); decimated to ≤ ~2000 points."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if x.size == 0:
            self.curve.setData([], [])
            return
        step = max(1, x.shape[0] // 1000)
        n = (x.shape[0] // step) * step
        if step > 1:
            blocks = x[x.shape[0] - n :].reshape(-1, step)
            y = np.empty(2 * blocks.shape[0], np.float32)
            y[0::2] = blocks.min(axis=1)
            y[1::2] = blocks.max(axis=1)
            t = np.repeat(np.arange(blocks.shape[0]) * step - n, 2) / sample_rate
        else:
            y = x
            t = (np.arange(x.shape[0]) - x.shape[0]) / sample_rate
        self.curve.setData(t, y)
