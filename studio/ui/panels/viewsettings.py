"""A compact bar of spectrogram settings above the views: FFT size, window, hop, scale, range, colormap.

A QToolBar, so that in a narrow window the controls that do not fit move behind its » button
instead of setting the window's minimum width."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QLabel, QToolBar, QWidget

from studio.workers.spectrum import COLORMAPS, FFT_SIZES, SCALES, WINDOWS, SpectrogramSettings

HOP_FRACTIONS = (2, 4, 8)  # hop = n_fft / fraction
DB_RANGES = (60, 80, 90, 100, 120)


class SpectrogramSettingsBar(QToolBar):
    """Emits ``changed(SpectrogramSettings)`` whenever a control changes."""

    changed = Signal(object)

    def __init__(self, settings: SpectrogramSettings, parent: QWidget | None = None) -> None:
        super().__init__("Spectrogram settings", parent)
        self.setObjectName("view-settings")
        self.setMovable(False)
        self.setFloatable(False)
        self.fft = self._combo([str(n) for n in FFT_SIZES], "FFT size (samples)")
        self.window = self._combo(list(WINDOWS), "Analysis window")
        self.hop = self._combo([f"1/{f}" for f in HOP_FRACTIONS], "Hop as a fraction of the FFT size")
        self.scale = self._combo(list(SCALES), "Frequency scale")
        self.db_range = self._combo([f"{d} dB" for d in DB_RANGES], "Dynamic range shown below 0 dBFS")
        self.colormap = self._combo(list(COLORMAPS), "Colormap (perceptually uniform)")
        for label, combo in (
            ("FFT", self.fft),
            ("window", self.window),
            ("hop", self.hop),
            ("scale", self.scale),
            ("range", self.db_range),
            ("colours", self.colormap),
        ):
            caption = QLabel(f" {label}")
            caption.setObjectName("dim")
            self.addWidget(caption)
            self.addWidget(combo)
        self.set_settings(settings)
        for combo in (self.fft, self.window, self.hop, self.scale, self.db_range, self.colormap):
            combo.currentIndexChanged.connect(self._emit)

    @staticmethod
    def _combo(items: list[str], tip: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(items)
        combo.setToolTip(tip)
        return combo

    def set_settings(self, s: SpectrogramSettings) -> None:
        combos = (self.fft, self.window, self.hop, self.scale, self.db_range, self.colormap)
        for combo in combos:
            combo.blockSignals(True)
        self.fft.setCurrentText(str(s.n_fft))
        self.window.setCurrentText(s.window)
        fraction = min(HOP_FRACTIONS, key=lambda f: abs(s.n_fft // f - s.hop))
        self.hop.setCurrentText(f"1/{fraction}")
        self.scale.setCurrentText(s.scale)
        self.db_range.setCurrentText(f"{min(DB_RANGES, key=lambda d: abs(d - s.db_range))} dB")
        self.colormap.setCurrentText(s.colormap)
        for combo in combos:
            combo.blockSignals(False)

    def settings(self) -> SpectrogramSettings:
        n_fft = int(self.fft.currentText())
        fraction = int(self.hop.currentText().split("/")[1])
        return SpectrogramSettings(
            n_fft=n_fft,
            hop=n_fft // fraction,
            window=self.window.currentText(),
            scale=self.scale.currentText(),
            db_range=float(self.db_range.currentText().split()[0]),
            colormap=self.colormap.currentText(),
        )

    def _emit(self) -> None:
        self.changed.emit(self.settings())
