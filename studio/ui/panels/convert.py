"""The convert panel: what to convert (source), into what (own-voice transform and/or a target voice),
Convert / Cancel, and the live section (devices, block, gate, monitor, Start/Stop and live readouts).

Widgets only (GUI thread): the window's ``ConversionController`` runs the workers and feeds the readouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from studio.ui import settings as settings_store
from studio.ui import theme
from studio.ui.widgets.common import quiet_progress, readout_label, select_combo_data, set_combo_items
from studio.ui.widgets.run_buttons import run_buttons

SOURCES = {
    "take": "The shown take",
    "selection": "The selection",
    "recording": "The last recording",
}
OWN_VOICE = ""  # the voice combo's data for "no target voice"
MEASURED_SPEAKER = ""  # the speaker combo's data for "the take's own statistics" (no source voice)
WORLD_RENDER = "world"  # the render combo's data for WORLD's own synthesis (``convert.render.WORLD``)
HOP_CHOICES_MS = (20, 30, 40, 60, 80, 120)
DEVICE_BLOCKS = (128, 256, 512, 1024)
AUTO_HOP = 0  # the hop combo's data for "auto": the engine's choice for the target (live.default_hop_ms; 20 ms today)
DEFAULT_GATE_DB = -55.0


@dataclass
class ConvertParams:
    """The offline settings. voice: a voice name ("" = own voice only). render: "world" or the name of
    a mel vocoder that renders the converted speech (``convert.render.renderer_for``). speaker: the
    voice of whoever speaks in the take ("" = measured on the take), used when converting to a voice
    (``ConversionTarget.source``; the live converter starts from it too)."""

    source: str
    voice: str
    pitch_semitones: float
    formant_ratio: float
    whisper: bool
    render: str = WORLD_RENDER
    speaker: str = MEASURED_SPEAKER


@dataclass
class LiveParams:
    """The live settings; devices are names ("default" = the system default); hop_ms None = auto
    (the engine's default for the target)."""

    input_device: str
    output_device: str
    hop_ms: float | None
    device_block: int
    gate_db: float | None
    monitor: bool


class ConvertPanel(QWidget):
    """Emits ``convertRequested(ConvertParams)``, ``cancelRequested()``, ``buildVoiceRequested()``,
    ``refreshVoicesRequested()``, ``liveToggled()`` (start or stop) and ``monitorToggled(bool)``."""

    convertRequested = Signal(object)
    cancelRequested = Signal()
    buildVoiceRequested = Signal()
    refreshVoicesRequested = Signal()
    liveToggled = Signal()
    monitorToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # -- offline ----------------------------------------------------------------------------
        self.source = QComboBox()
        for key, text in SOURCES.items():
            self.source.addItem(text, key)
        self.voice = QComboBox()
        self.voice.setToolTip("Convert to another speaker's voice, or keep your own and transform it")
        self.voice.addItem("My own voice", OWN_VOICE)
        self.speaker = QComboBox()
        self.speaker.setToolTip(
            "Whose voice the take is. A voice built from that speaker's recordings gives conversion to another "
            "voice steadier statistics than one take can (most for takes of a few seconds); "
            "the default measures them on the take"
        )
        self.speaker.addItem("Measured on the take", MEASURED_SPEAKER)
        self.refresh_voices = QPushButton()
        self.refresh_voices.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.refresh_voices.setToolTip("Look for voices again")
        self.refresh_voices.setFixedWidth(34)
        self.build_voice = QPushButton("Build voice from files…")
        self.build_voice.setToolTip("Make a target voice from a few minutes of one speaker's recordings")
        self.voice_info = QLabel("")
        self.voice_info.setObjectName("dim")
        self.voice_info.setWordWrap(True)
        self.pitch = QDoubleSpinBox()
        self.pitch.setRange(-24.0, 24.0)
        self.pitch.setSingleStep(1.0)
        self.pitch.setDecimals(1)
        self.pitch.setSuffix(" st")
        self.pitch.setToolTip("Pitch shift in semitones (+12 = an octave up); duration is kept")
        self.formant = QDoubleSpinBox()
        self.formant.setRange(0.5, 2.0)
        self.formant.setSingleStep(0.05)
        self.formant.setValue(1.0)
        self.formant.setPrefix("× ")
        self.formant.setToolTip("Formant / timbre shift: >1 a smaller, brighter vocal tract; <1 a larger one")
        self.render = QComboBox()
        self.render.addItem("WORLD (DSP)", WORLD_RENDER)
        self.render.setToolTip(
            "What turns the converted tracks into sound: WORLD's synthesis, or a mel vocoder (e.g. speech-wavernn, "
            "trained on the ru voice's speaker: closer to that speaker, still noisier than WORLD; docs/voice.md)"
        )
        self.whisper = QCheckBox("whisper")
        self.whisper.setToolTip("Render without voicing: a whisper through the same vocal tract")
        self.convert_button, self.cancel_button, buttons = run_buttons("Convert")
        self.progress = quiet_progress(1)
        self.readout = readout_label(wrap=True)

        voice_row = QHBoxLayout()
        voice_row.addWidget(self.voice, 1)
        voice_row.addWidget(self.refresh_voices)
        form = QFormLayout()
        form.setHorizontalSpacing(10)
        form.addRow("source", self.source)
        form.addRow("target", voice_row)
        form.addRow("speaker", self.speaker)
        form.addRow("", self.build_voice)
        form.addRow("pitch", self.pitch)
        form.addRow("formants", self.formant)
        form.addRow("", self.whisper)
        form.addRow("render", self.render)
        offline = QGroupBox("Convert a take")
        offline_layout = QVBoxLayout(offline)
        offline_layout.addLayout(form)
        offline_layout.addWidget(self.voice_info)
        offline_layout.addLayout(buttons)
        offline_layout.addWidget(self.progress)
        offline_layout.addWidget(self.readout)

        # -- live -------------------------------------------------------------------------------
        self.input_device = QComboBox()
        self.input_device.setToolTip("Microphone")
        self.output_device = QComboBox()
        self.output_device.setToolTip("Where the converted voice plays")
        self.hop = QComboBox()
        self.hop.addItem("auto", AUTO_HOP)
        for ms in HOP_CHOICES_MS:
            self.hop.addItem(f"{ms} ms", ms)
        self.hop.setCurrentIndex(0)
        self.hop.setToolTip("Conversion block: longer blocks give more headroom and more latency "
                            "(auto: the engine's choice for the target, 20 ms today)")
        self.device_block = QComboBox()
        for frames in DEVICE_BLOCKS:
            self.device_block.addItem(f"{frames}", frames)
        self.device_block.setCurrentIndex(DEVICE_BLOCKS.index(256))
        self.device_block.setToolTip("Frames per audio callback")
        self.gate_on = QCheckBox("gate")
        self.gate_on.setChecked(True)
        self.gate_on.setToolTip("Noise gate: blocks quieter than the threshold are not converted")
        self.gate = QSpinBox()
        self.gate.setRange(-90, -10)
        self.gate.setValue(int(DEFAULT_GATE_DB))
        self.gate.setSuffix(" dBFS")
        self.gate_on.toggled.connect(self.gate.setEnabled)
        self.monitor = QCheckBox("monitor")
        self.monitor.setToolTip("Hear the converted voice (off: it is still made, and kept as a take when you stop)")
        self.monitor.setChecked(True)
        self.monitor.toggled.connect(self.monitorToggled)
        self.live_button = QPushButton("▶ Start live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Microphone in, converted voice out, in real time")
        self.live_button.clicked.connect(lambda _checked: self.liveToggled.emit())
        self.live_latency = readout_label("latency —", wrap=True)
        self.live_inference = readout_label("inference —", wrap=True)
        self.live_headroom = readout_label("headroom —", wrap=True)
        self.live_underruns = readout_label("underruns —", wrap=True)
        self.headroom_bar = quiet_progress(100)
        self.headroom_bar.setToolTip("Time left in each block after converting it")
        self.live_warning = QLabel("")
        self.live_warning.setWordWrap(True)
        self.live_warning.setStyleSheet(f"color: {theme.WARNING};")

        gate_row = QHBoxLayout()
        gate_row.addWidget(self.gate_on)
        gate_row.addWidget(self.gate, 1)
        live_form = QFormLayout()
        live_form.setHorizontalSpacing(10)
        live_form.addRow("input", self.input_device)
        live_form.addRow("output", self.output_device)
        live_form.addRow("block", self.hop)
        live_form.addRow("callback", self.device_block)
        live_form.addRow("", gate_row)
        live_form.addRow("", self.monitor)
        readouts = QVBoxLayout()
        readouts.setSpacing(1)
        for label in (self.live_latency, self.live_inference, self.live_headroom, self.live_underruns):
            readouts.addWidget(label)
        live = QGroupBox("Live")
        live_layout = QVBoxLayout(live)
        live_layout.addLayout(live_form)
        live_layout.addWidget(self.live_button)
        live_layout.addLayout(readouts)
        live_layout.addWidget(self.headroom_bar)
        live_layout.addWidget(self.live_warning)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(offline)
        layout.addWidget(live)
        layout.addStretch(1)

        self.convert_button.clicked.connect(lambda: self.convertRequested.emit(self.params()))
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.build_voice.clicked.connect(self.buildVoiceRequested)
        self.refresh_voices.clicked.connect(self.refreshVoicesRequested)
        self.voice.currentIndexChanged.connect(self._show_voice_info)
        self._voice_summaries: dict[str, str] = {}
        self._wanted_voice = ""  # a restored choice, applied when the voices are listed
        self._wanted_speaker = ""  # the same for the speaker
        self._wanted_render = ""  # the same for the renderer, applied when the models are listed
        self._wanted_devices = ("", "")

    # -- values ----------------------------------------------------------------------------------
    def params(self) -> ConvertParams:
        return ConvertParams(
            source=str(self.source.currentData()),
            voice=str(self.voice.currentData() or OWN_VOICE),
            pitch_semitones=float(self.pitch.value()),
            formant_ratio=float(self.formant.value()),
            whisper=self.whisper.isChecked(),
            render=str(self.render.currentData() or WORLD_RENDER),
            speaker=str(self.speaker.currentData() or MEASURED_SPEAKER),
        )

    def live_params(self) -> LiveParams:
        return LiveParams(
            input_device=self.input_device.currentText() or "default",
            output_device=self.output_device.currentText() or "default",
            hop_ms=float(self.hop.currentData()) or None,
            device_block=int(self.device_block.currentData()),
            gate_db=float(self.gate.value()) if self.gate_on.isChecked() else None,
            monitor=self.monitor.isChecked(),
        )

    def set_source(self, key: str) -> None:
        select_combo_data(self.source, key)

    def set_voices(self, voices: list[tuple[str, str]], current: str | None = None) -> None:
        """Fill the target and speaker lists with (name, one-line summary) pairs, keeping the selections
        if possible."""
        keep = current if current is not None else str(self.voice.currentData() or OWN_VOICE)
        if self._wanted_voice and current is None:
            keep, self._wanted_voice = self._wanted_voice, ""
        keep_speaker = self._wanted_speaker or str(self.speaker.currentData() or MEASURED_SPEAKER)
        self._wanted_speaker = ""
        self.voice.blockSignals(True)
        self.voice.clear()
        self.voice.addItem("My own voice", OWN_VOICE)
        self.speaker.clear()
        self.speaker.addItem("Measured on the take", MEASURED_SPEAKER)
        self._voice_summaries = {}
        for name, summary in voices:
            for combo in (self.voice, self.speaker):
                combo.addItem(f"Voice: {name}", name)
                combo.setItemData(combo.count() - 1, summary, Qt.ItemDataRole.ToolTipRole)
            self._voice_summaries[name] = summary
        index = self.voice.findData(keep)
        self.voice.setCurrentIndex(max(0, index))
        self.speaker.setCurrentIndex(max(0, self.speaker.findData(keep_speaker)))
        self.voice.blockSignals(False)
        self._show_voice_info()

    def select_voice(self, name: str) -> bool:
        """Make voice ``name`` the target (False when it is not listed)."""
        return select_combo_data(self.voice, name)

    def set_renderers(self, vocoders: list[tuple[str, str]]) -> None:
        """Offer WORLD and these (name, description) mel vocoders, keeping the choice if it is still there."""
        keep = self._wanted_render or str(self.render.currentData() or WORLD_RENDER)
        self._wanted_render = ""
        self.render.blockSignals(True)
        self.render.clear()
        self.render.addItem("WORLD (DSP)", WORLD_RENDER)
        for name, description in vocoders:
            self.render.addItem(f"Vocoder: {name}", name)
            self.render.setItemData(self.render.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.render.setCurrentIndex(max(0, self.render.findData(keep)))
        self.render.blockSignals(False)

    def voice_names(self) -> list[str]:
        return [str(self.voice.itemData(i)) for i in range(1, self.voice.count())]

    def select_speaker(self, name: str) -> bool:
        """Say that voice ``name`` is whoever speaks in the takes ("" = measure it on each take; False
        when it is not listed)."""
        return select_combo_data(self.speaker, name)

    def _show_voice_info(self, *_args) -> None:
        name = str(self.voice.currentData() or OWN_VOICE)
        self.voice_info.setText(self._voice_summaries.get(name, "Transforms your own voice (WORLD analysis)."))
        self.speaker.setEnabled(name != OWN_VOICE)  # only a conversion to a voice maps from the speaker's statistics

    def set_devices(self, inputs: list[str], outputs: list[str], current_in: str, current_out: str) -> None:
        wanted_in, wanted_out = self._wanted_devices
        self._wanted_devices = ("", "")
        for combo, names, current in (
            (self.input_device, inputs, wanted_in or current_in),
            (self.output_device, outputs, wanted_out or current_out),
        ):
            set_combo_items(combo, names, current if combo.count() == 0 else combo.currentText())

    # -- persistence (QSettings) --------------------------------------------------------------------
    def save_state(self, s) -> None:
        p, live = self.params(), self.live_params()
        s.setValue("convert/source", p.source)
        s.setValue("convert/voice", p.voice)
        s.setValue("convert/speaker", p.speaker)
        s.setValue("convert/pitch", p.pitch_semitones)
        s.setValue("convert/formant", p.formant_ratio)
        s.setValue("convert/whisper", p.whisper)
        s.setValue("convert/render", p.render)
        s.setValue("convert/hop_ms", int(live.hop_ms or AUTO_HOP))
        s.setValue("convert/device_block", live.device_block)
        s.setValue("convert/gate_on", self.gate_on.isChecked())
        s.setValue("convert/gate_db", int(self.gate.value()))
        s.setValue("convert/monitor", live.monitor)
        s.setValue("convert/live_input", live.input_device)
        s.setValue("convert/live_output", live.output_device)

    def restore_state(self, s) -> None:
        self.set_source(settings_store.read_str(s, "convert/source", "take"))
        self.pitch.setValue(settings_store.read_float(s, "convert/pitch", 0.0))
        self.formant.setValue(settings_store.read_float(s, "convert/formant", 1.0))
        self.whisper.setChecked(settings_store.read_bool(s, "convert/whisper", False))
        self._wanted_voice = settings_store.read_str(s, "convert/voice", OWN_VOICE)
        self._wanted_speaker = settings_store.read_str(s, "convert/speaker", MEASURED_SPEAKER)
        self._wanted_render = settings_store.read_str(s, "convert/render", WORLD_RENDER)
        for combo, key, default in ((self.hop, "convert/hop_ms", AUTO_HOP), (self.device_block, "convert/device_block", 256)):
            index = combo.findData(settings_store.read_int(s, key, default))
            if index >= 0:
                combo.setCurrentIndex(index)
        self.gate_on.setChecked(settings_store.read_bool(s, "convert/gate_on", True))
        self.gate.setValue(settings_store.read_int(s, "convert/gate_db", int(DEFAULT_GATE_DB)))
        self.monitor.setChecked(settings_store.read_bool(s, "convert/monitor", True))
        self._wanted_devices = (
            settings_store.read_str(s, "convert/live_input", ""), settings_store.read_str(s, "convert/live_output", "")
        )

    # -- state -----------------------------------------------------------------------------------
    def set_converting(self, running: bool, text: str = "") -> None:
        self.convert_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setRange(0, 0 if running else 1)  # busy indicator while running
        self.progress.setValue(0)
        if text:
            self.readout.setText(text)

    def set_building(self, building: bool) -> None:
        self.build_voice.setEnabled(not building)

    def set_live(self, state: str) -> None:
        """state: "stopped", "starting", "running" or "stopping"."""
        running = state in ("starting", "running")
        self.live_button.setChecked(running)
        self.live_button.setText("■ Stop live" if running else "▶ Start live")
        self.live_button.setEnabled(state in ("stopped", "running"))
        for widget in (self.input_device, self.output_device, self.hop, self.device_block, self.gate_on, self.gate):
            widget.setEnabled(state == "stopped" and (widget is not self.gate or self.gate_on.isChecked()))

    def show_live_stats(self, stats) -> None:
        """Fill the readouts from a ``LiveStats`` snapshot."""
        self.live_latency.setText(
            f"latency   {stats.latency_ms:5.0f} ms  (device {stats.device_latency_ms:.0f} ms)"
        )
        self.live_inference.setText(
            f"inference {stats.inference_ms_mean:5.1f} ms / {stats.hop_ms:.0f} ms (max {stats.inference_ms_max_recent:.1f})"
        )
        self.live_headroom.setText(f"headroom  {100 * stats.headroom:5.0f} %")
        self.live_underruns.setText(
            f"underruns {stats.underruns:5d}   device underflows {stats.device_underflows}   "
            f"input overflows {stats.device_input_overflows}"
            + (f" ({stats.input_overflows} frames dropped)" if stats.input_overflows else "")
            + f"   gated {stats.gated_hops}/{stats.hops}"
        )
        self.live_underruns.setToolTip(
            "underruns: the converter's output ran dry; device underflows: the sound device ran dry (a stall of the "
            f"whole machine: the longest pause between callbacks was {stats.longest_callback_gap_ms:.0f} ms); "
            "input overflows: microphone audio lost"
        )
        self.headroom_bar.setValue(int(max(0.0, min(1.0, stats.headroom)) * 100))
        self.live_warning.setText(stats.warning or "")
