"""The transport bar: home, play/pause, stop, play selection, loop, time readout, output device, meter."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QStyle, QToolBar, QToolButton, QWidget

from studio.ui import theme
from studio.ui.timefmt import format_time
from studio.ui.widgets.common import set_combo_items
from studio.ui.widgets.meter import LevelMeter


class TransportBar(QToolBar):
    """Buttons emit the matching signals; the window keeps the bar in step with the player."""

    homeClicked = Signal()
    playClicked = Signal()
    stopClicked = Signal()
    playSelectionClicked = Signal()
    loopToggled = Signal(bool)
    outputDeviceChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Transport", parent)
        self.setObjectName("transport")
        self.setMovable(False)
        pix = QStyle.StandardPixmap
        self.home = self._button("Home", "To the start (Home)", self.homeClicked, pix.SP_MediaSkipBackward)
        self.play = self._button("Play", "Play / pause (Space)", self.playClicked, pix.SP_MediaPlay)
        self.stop = self._button("Stop", "Stop (Ctrl+.)", self.stopClicked, pix.SP_MediaStop)
        self.play_selection = self._button(
            "Selection", "Play the selection (Shift+Space)", self.playSelectionClicked, pix.SP_MediaSeekForward
        )
        self.loop = self._button("Loop", "Loop the selection or the whole take (L)", None, pix.SP_BrowserReload)
        self.loop.setCheckable(True)
        self.loop.toggled.connect(self.loopToggled)
        self.addSeparator()
        self.time = QLabel()
        self.time.setFont(theme.monospace_font(12))
        self.time.setObjectName("readout")
        self.time.setMinimumWidth(190)
        self.time.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.addWidget(self.time)
        self.set_time(0.0, 0.0)
        self.playing = False
        self.addSeparator()
        caption = QLabel(" output ")
        caption.setObjectName("dim")
        self.addWidget(caption)
        self.output_device = QComboBox()
        self.output_device.setMinimumWidth(120)
        self.output_device.setToolTip("Output device")
        self.output_device.activated.connect(lambda _i: self.outputDeviceChosen.emit(self.output_device.currentText()))
        self.addWidget(self.output_device)
        self.meter = LevelMeter()
        self.meter.setMinimumWidth(100)
        self.meter.setMaximumWidth(260)
        self.meter.setToolTip("Output level (dBFS)")
        self.addWidget(self.meter)

    def _button(self, text: str, tip: str, signal, icon) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setIcon(self.style().standardIcon(icon))
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setToolTip(tip)
        if signal is not None:
            button.clicked.connect(signal)
        self.addWidget(button)
        return button

    def set_time(self, position_s: float, duration_s: float) -> None:
        self.time.setText(f"{format_time(position_s)} / {format_time(duration_s)}")

    def set_playing(self, playing: bool) -> None:
        self.playing = playing
        pix = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play.setIcon(self.style().standardIcon(pix))
        self.play.setText("Pause" if playing else "Play")

    def set_devices(self, names: list[str], current: str) -> None:
        set_combo_items(self.output_device, names, current)
