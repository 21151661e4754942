"""The generate panel: mode, length, seed, temperature / σ, denoiser, device, spectral projection; Generate and Cancel;
progress with samples done, × real time and time left. Widgets only: the window runs the worker."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.ui.timefmt import format_time
from studio.ui.widgets.common import quiet_progress, readout_label
from studio.ui.widgets.run_buttons import run_buttons
from studio.workers.generation import DEFAULT_PROJECTION

MODES = {
    "free": "Free (unconditional)",
    "file": "Vocode the open file",
    "selection": "Vocode the selection",
    "recording": "Vocode the last recording",
}


@dataclass
class GenerateParams:
    mode: str
    seconds: float
    seed: int
    temperature: float
    sigma: float
    denoise: float
    device: str
    show_distribution: bool = False  # the predicted-distribution heat map (WaveNet, WaveRNN)
    projection: int | None | str = "model"
    """Spectral projection passes (None = off; "model" = the model's own setting)."""


PROJECTION_TIP = (
    "Mel-conditioned models: after the network, the output's mel is brought to the input's, band by band,\n"
    "keeping the output's own phase and detail (the bundled speech vocoders ship with it on: PESQ 1.1-1.5\n"
    "becomes 3.2-3.5 on held-out speech, docs/models.md). Off: what the network makes, as it makes it.\n"
    "The first sound waits until about half a second of audio is made."
)
DISTRIBUTION_FAMILIES = ("wavenet", "wavernn")
"""Families that report their predicted distribution while generating (``supports_distribution``)."""
DENOISE_TIP = "WaveGlow bias denoiser strength (0 = off; 0.1 is the reference's)"
DENOISE_LPC_TIP = (
    "Off for this model: an LPC WaveGlow (such as speech-waveglow) models the excitation of a linear prediction, "
    "and the bias denoiser makes it worse at every strength (docs/models.md)"
)


class GeneratePanel(QWidget):
    """Emits ``generateRequested(GenerateParams)``, ``cancelRequested()`` and
    ``showDistributionChanged(bool)`` (the "Show predicted distribution" option toggled)."""

    generateRequested = Signal(object)
    cancelRequested = Signal()
    showDistributionChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = QLabel("No model loaded — pick one in Models")
        self.model_label.setWordWrap(True)
        self.mode = QComboBox()
        for key, text in MODES.items():
            self.mode.addItem(text, key)
        self.seconds = QDoubleSpinBox()
        self.seconds.setRange(0.05, 600.0)
        self.seconds.setValue(2.0)
        self.seconds.setSuffix(" s")
        self.seconds.setToolTip("Length of a free generation (vocoding follows the source's length)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip(
            "Sampling temperature of autoregressive models (WaveNet, WaveRNN); 1 = the model's own setting "
            "(its card's sampling_temperature, e.g. 0.9 for the bundled speech vocoders)"
        )
        self.sigma = QDoubleSpinBox()
        self.sigma.setRange(0.0, 1.5)
        self.sigma.setSingleStep(0.05)
        self.sigma.setValue(0.6)
        self.sigma.setToolTip("Latent σ of flow models (WaveGlow)")
        self.denoise = QDoubleSpinBox()
        self.denoise.setRange(0.0, 1.0)
        self.denoise.setSingleStep(0.01)
        self.denoise.setToolTip(DENOISE_TIP)
        self.device = QComboBox()
        self.show_distribution = QCheckBox("Show predicted distribution")
        self.show_distribution.setToolTip(
            "WaveNet and WaveRNN: a heat map under the waveform of the model's predicted distribution over\n"
            "its classes while it generates (costs a little speed)"
        )
        self.show_distribution.setEnabled(False)
        self.projection = QCheckBox("Bring the output to the mel (spectral projection)")
        self.projection.setToolTip(PROJECTION_TIP)
        self.projection.setEnabled(False)
        self._projection_passes = DEFAULT_PROJECTION
        form = QFormLayout()
        form.setHorizontalSpacing(10)
        form.addRow("mode", self.mode)
        form.addRow("length", self.seconds)
        form.addRow("seed", self.seed)
        form.addRow("temperature", self.temperature)
        form.addRow("σ", self.sigma)
        form.addRow("denoiser", self.denoise)
        form.addRow("device", self.device)
        form.addRow("", self.show_distribution)
        form.addRow("", self.projection)

        self.generate_button, self.cancel_button, buttons = run_buttons("Generate")
        self.generate_button.setEnabled(False)  # until a model is loaded
        self.progress = quiet_progress(1000)
        self.readout = readout_label()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.model_label)
        layout.addSpacing(4)
        layout.addLayout(form)
        layout.addSpacing(6)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.readout)
        layout.addStretch(1)

        self.generate_button.clicked.connect(lambda: self.generateRequested.emit(self.params()))
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.show_distribution.toggled.connect(self.showDistributionChanged)

    def params(self) -> GenerateParams:
        return GenerateParams(
            mode=str(self.mode.currentData()),
            seconds=float(self.seconds.value()),
            seed=int(self.seed.value()),
            temperature=float(self.temperature.value()),
            sigma=float(self.sigma.value()),
            denoise=float(self.denoise.value()) if self.denoise.isEnabled() else 0.0,
            device=self.device.currentText() or "cpu",
            show_distribution=self.show_distribution.isChecked() and self.show_distribution.isEnabled(),
            projection=(self._projection_passes if self.projection.isChecked() else None)
            if self.projection.isEnabled() else "model",
        )

    def set_mode(self, mode: str) -> None:
        index = self.mode.findData(mode)
        if index >= 0:
            self.mode.setCurrentIndex(index)

    def set_model(
        self, name: str, family: str, conditioned: bool, sample_rate: int, device: str, denoise: bool | None = None,
        projection: int | None = None,
    ) -> None:
        """Show the loaded model and enable the controls it honours. ``denoise``: whether it takes the
        bias denoiser (the model's ``supports_denoise``; None: any WaveGlow). ``projection``: the model's
        own spectral projection (its config's passes; None = none): the box starts checked when it has
        one, and checking it for a model without one asks for ``DEFAULT_PROJECTION`` passes."""
        kind = "mel-conditioned vocoder" if conditioned else "unconditional"
        self.model_label.setText(f"<b>{name}</b> · {family} · {kind} · {sample_rate} Hz · {device.upper()}")
        self.temperature.setEnabled(family in ("wavenet", "wavernn"))
        self.sigma.setEnabled(family == "waveglow")
        denoise = family == "waveglow" if denoise is None else denoise
        self.denoise.setEnabled(denoise)
        self.denoise.setToolTip(DENOISE_TIP if denoise or family != "waveglow" else DENOISE_LPC_TIP)
        self.show_distribution.setEnabled(family in DISTRIBUTION_FAMILIES)
        self.projection.setEnabled(conditioned)
        self.projection.setChecked(conditioned and projection is not None)
        self._projection_passes = DEFAULT_PROJECTION if projection is None else int(projection)
        if conditioned and self.mode.currentData() == "free":
            self.set_mode("file")
        elif not conditioned:
            self.set_mode("free")
        self.generate_button.setEnabled(True)

    def set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def show_progress(self, done: int, total: int, elapsed_s: float, sample_rate: int) -> None:
        self.progress.setValue(int(1000 * done / total) if total else 0)
        if done <= 0 or elapsed_s <= 0:
            self.readout.setText(f"{0:>9,} / {total:,} samples")
            return
        rate = done / elapsed_s  # samples per second
        realtime = rate / sample_rate
        left = (total - done) / rate
        self.readout.setText(f"{done:>9,} / {total:,} samples\n{realtime:5.2f}× real time · {format_time(left, False)} left")
