"""The studio's main window: views in the middle, docks around, transport below, status at the bottom.

Threads: everything here runs on the GUI thread except ``finish_recording``, which a worker runs.
Slow work (decoding files and building their tracks, saving, model loading, generation, spectrograms,
finishing a recording) runs in workers; their signals arrive here queued. Starting and stopping the
player and starting the recorder stay here: they open or close a stream and took 2–70 ms (measured
through the PulseAudio test server). Saving unsaved takes when the window closes also blocks, on
purpose: the window must not go before they are written. One 30 Hz timer polls the player and the
recorder (cheap status snapshots) and moves the playhead and meters; the views repaint from their own
timer. A worker error becomes a message box that does not block the event loop.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.ui import settings as settings_store
from studio.ui import theme
from studio.ui.compare import CompareLane, pair_partner
from studio.ui.conversion import ConversionController
from studio.ui.panels.convert import ConvertPanel
from studio.ui.panels.generate import GeneratePanel, GenerateParams
from studio.ui.panels.models import ModelsPanel, card_html
from studio.ui.panels.record import LIVE_WAVEFORM_S, RecordPanel
from studio.ui.panels.train import TrainPanel
from studio.ui.panels.transport import TransportBar
from studio.ui.panels.viewsettings import SpectrogramSettingsBar
from studio.ui.takes import Take, TakesPanel
from studio.ui.training import TrainingController, families_and_profiles
from studio.ui.views.distribution import DistributionTrack
from studio.ui.views.timeline import TimelineView
from studio.ui.views.track import AudioTrack, load_track
from studio.ui.widgets.vscroll import VerticalScrollArea
from studio.workers.base import FunctionWorker, Worker, describe_error, start_worker, wait_for_workers
from studio.workers.generation import (
    DISTRIBUTION_STRIDE,
    PROJECTION_OPTION,
    GenerationJob,
    GenerationWorker,
    block_size_for,
    distribution_classes,
)
from studio.workers.models import LoadedModel, ModelLoadWorker, available_devices
from studio.workers.spectrum import SpectrogramSettings

log = logging.getLogger(__name__)

POLL_HZ = 30
AUDIO_FILTERS = "Audio files (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aif *.aiff);;All files (*)"
SAVE_FILTERS = {
    "WAV (*.wav)": ".wav",
    "FLAC (*.flac)": ".flac",
    "OGG Vorbis (*.ogg)": ".ogg",
    "MP3 (*.mp3)": ".mp3",
}
DEFAULT_DEVICE = "default"


def _audio_extension_ok(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


@dataclass
class FinishedRecording:
    """A stopped recording read back from ``path`` as a complete mono ``track``; ``gaps``: the
    recorder's ``RecordingGap``s (spans the input lost, silence in the file)."""

    path: str
    track: AudioTrack
    gaps: tuple[Any, ...]


def finish_recording(recorder: Any) -> FinishedRecording:
    """Worker thread: stop ``recorder`` (drains, finalises the file) and read the file back."""
    path = recorder.stop()
    return FinishedRecording(path, load_track(path), recorder.gaps)


class MainWindow(QMainWindow):
    """The studio window. ``takeOpened(Take)`` fires whenever a take becomes the shown one."""

    takeOpened = Signal(object)
    errorShown = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studio-main-window")
        self.setWindowTitle("Waveform Studio")
        self.setAcceptDrops(True)
        self.settings = settings_store.make_settings()
        self.current_take: Take | None = None
        self.model: LoadedModel | None = None
        self.generation: GenerationWorker | None = None
        self.generation_take: Take | None = None
        self.recorder: Any = None
        self.last_recording: Take | None = None
        self.error_box: QMessageBox | None = None
        self.errors: list[tuple[str, str]] = []
        self._workers: list[Worker] = []
        self._playing_take: Take | None = None
        self._play_offset = 0.0
        self._cpu_mark = (time.process_time(), time.perf_counter())
        self._cpu_load = 0.0
        self._untitled = 0
        self._shut_down = False

        from studio.engine.audio.player import Player

        self.output_device = settings_store.read_str(self.settings, "audio/output_device", DEFAULT_DEVICE)
        self.input_device = settings_store.read_str(self.settings, "audio/input_device", DEFAULT_DEVICE)
        self.player = Player(device=None if self.output_device == DEFAULT_DEVICE else self.output_device)

        self._build_central()
        self._build_docks()
        self._build_transport()
        self._build_status()
        self._build_actions()
        self._restore_settings()
        self._refresh_devices()
        self.refresh_models()
        self.conversion.refresh_voices()

        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(int(1000 / POLL_HZ))
        self._poll_timer.timeout.connect(self._poll)
        self._poll_timer.start()

    # ------------------------------------------------------------------------------- building
    def _build_central(self) -> None:
        spec = self._read_spectrogram_settings()
        self.timeline = TimelineView(settings=spec)
        self.view_settings = SpectrogramSettingsBar(spec)
        self.view_settings.changed.connect(self.timeline.set_spectrogram_settings)
        self.timeline.seekRequested.connect(self.seek)
        self.timeline.selectionChanged.connect(self._on_selection)
        self.compare = CompareLane(spec)
        self.view_settings.changed.connect(self.compare.timeline.set_spectrogram_settings)
        self.compare.seekRequested.connect(self.seek)
        views = QSplitter(Qt.Orientation.Vertical)
        views.setChildrenCollapsible(False)
        views.addWidget(self.timeline)
        views.addWidget(self.compare)
        views.setStretchFactor(0, 3)
        views.setStretchFactor(1, 2)
        self.empty_hint = QLabel("Open a file (Ctrl+O), drop one here, record (R) or generate with a model.")
        self.empty_hint.setObjectName("dim")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.view_settings)
        layout.addWidget(views, 1)
        layout.addWidget(self.empty_hint)
        self.setCentralWidget(central)

    def _dock(
        self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea, scroll: bool = False
    ) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # restoreState finds docks by object name
        if scroll:  # tall panels scroll instead of forcing a tall window
            widget = VerticalScrollArea(widget)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        self.models_panel = ModelsPanel()
        self.models_panel.set_devices(available_devices())
        self.models_panel.loadRequested.connect(self.load_model)
        self.models_panel.openRequested.connect(self.open_checkpoint_dialog)
        self.models_panel.refresh_button.clicked.connect(self.refresh_lists)
        self.models_panel.voiceRequested.connect(self.choose_voice)
        self.takes_panel = TakesPanel()
        self.takes_panel.chosen.connect(self.show_take)
        self.takes_panel.saveRequested.connect(self.save_take_dialog)
        self.takes_panel.removeRequested.connect(self.remove_take)
        self.takes_panel.abToggled.connect(self._on_ab)
        self.generate_panel = GeneratePanel()
        self.generate_panel.device.addItems(available_devices())
        self.generate_panel.generateRequested.connect(self.generate)
        self.generate_panel.cancelRequested.connect(self.cancel_generation)
        self.generate_panel.showDistributionChanged.connect(lambda _on: self._show_distribution_of(self.current_take))
        self.record_panel = RecordPanel()
        self.record_panel.recordToggled.connect(self.toggle_recording)
        self.record_panel.inputDeviceChosen.connect(self.set_input_device)
        self.record_panel.meter.clipReset.connect(lambda: self.recorder.reset_clip() if self.recorder else None)
        self.convert_panel = ConvertPanel()
        self.conversion = ConversionController(self, self.convert_panel)
        self.train_panel = TrainPanel(*families_and_profiles())
        self.training = TrainingController(self, self.train_panel)

        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.models_dock = self._dock("Models", "dock-models", self.models_panel, left)
        self.takes_dock = self._dock("Takes", "dock-takes", self.takes_panel, left)
        self.generate_dock = self._dock("Generate", "dock-generate", self.generate_panel, right, scroll=True)
        self.record_dock = self._dock("Record", "dock-record", self.record_panel, right)
        self.convert_dock = self._dock("Convert", "dock-convert", self.convert_panel, right, scroll=True)
        self.train_dock = self._dock("Train", "dock-train", self.train_panel, right, scroll=True)
        self.tabifyDockWidget(self.generate_dock, self.record_dock)
        self.tabifyDockWidget(self.record_dock, self.convert_dock)
        self.tabifyDockWidget(self.convert_dock, self.train_dock)
        self.train_dock.visibilityChanged.connect(lambda visible: self.training.warm_up() if visible else None)
        self.generate_dock.raise_()
        self.resizeDocks([self.models_dock, self.generate_dock], [250, 290], Qt.Orientation.Horizontal)

    def _build_transport(self) -> None:
        self.transport = TransportBar(self)
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.transport)
        self.transport.playClicked.connect(self.toggle_play)
        self.transport.stopClicked.connect(self.stop)
        self.transport.homeClicked.connect(self.home)
        self.transport.playSelectionClicked.connect(self.play_selection)
        self.transport.loopToggled.connect(self._apply_loop)
        self.transport.outputDeviceChosen.connect(self.set_output_device)

    def _build_status(self) -> None:
        mono = theme.monospace_font()
        self.status_rate = QLabel("— Hz")
        self.status_device = QLabel("")
        self.status_latency = QLabel("latency — ms")
        self.status_underflows = QLabel("underruns 0")
        self.status_load = QLabel("engine 0 %")
        self.status_model = QLabel("no model")
        for label in (
            self.status_rate,
            self.status_model,
            self.status_device,
            self.status_latency,
            self.status_underflows,
            self.status_load,
        ):
            label.setFont(mono)
            self.statusBar().addPermanentWidget(label)

    def _action(self, text: str, shortcut: QKeySequence | str | None, slot, menu) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action("&Open…", QKeySequence.StandardKey.Open, self.open_file_dialog, file_menu)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action("Open &checkpoint…", None, self.open_checkpoint_dialog, file_menu)
        file_menu.addSeparator()
        self.save_action = self._action("&Save take as…", QKeySequence.StandardKey.Save, self.save_current_dialog, file_menu)
        self._action("&Export selection…", "Ctrl+Shift+E", self.export_selection_dialog, file_menu)
        file_menu.addSeparator()
        self._action("&Quit", QKeySequence.StandardKey.Quit, self.close, file_menu)

        play_menu = bar.addMenu("&Transport")
        self.play_action = self._action("Play / pause", Qt.Key.Key_Space, self.toggle_play, play_menu)
        self._action("Stop", "Ctrl+.", self.stop, play_menu)
        self._action("Play selection", "Shift+Space", self.play_selection, play_menu)
        self._action("To the start", Qt.Key.Key_Home, self.home, play_menu)
        self._action("Loop", "L", self.transport.loop.toggle, play_menu)
        play_menu.addSeparator()
        self.record_action = self._action("Record / stop", "R", self.toggle_recording, play_menu)
        self._action("Generate", "Ctrl+G", lambda: self.generate(self.generate_panel.params()), play_menu)
        self._action("Cancel generation", "Escape", self.cancel_generation, play_menu)

        view_menu = bar.addMenu("&View")
        self._action("Zoom in", QKeySequence.StandardKey.ZoomIn, lambda: self.timeline.zoom(2.0), view_menu)
        self._action("Zoom out", QKeySequence.StandardKey.ZoomOut, lambda: self.timeline.zoom(0.5), view_menu)
        self._action("Fit", "Ctrl+0", self.timeline.fit, view_menu)
        self._action("Scroll left", "Ctrl+Left", lambda: self.timeline.scroll(-0.25), view_menu)
        self._action("Scroll right", "Ctrl+Right", lambda: self.timeline.scroll(0.25), view_menu)
        self.compare_action = self._action(
            "Compare with source", "Ctrl+Shift+C", self._update_compare, view_menu
        )
        self.compare_action.setCheckable(True)
        self.compare_action.setChecked(True)
        self.compare_action.setToolTip("Show a converted take's source (or, during A/B, the take) under the views")
        view_menu.addSeparator()
        for dock in (
            self.models_dock, self.takes_dock, self.generate_dock, self.record_dock, self.convert_dock, self.train_dock
        ):
            view_menu.addAction(dock.toggleViewAction())
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------------------- settings
    def _read_spectrogram_settings(self) -> SpectrogramSettings:
        s = self.settings
        default = SpectrogramSettings()
        try:
            return SpectrogramSettings(
                n_fft=settings_store.read_int(s, "view/n_fft", default.n_fft),
                hop=settings_store.read_int(s, "view/hop", default.hop),
                window=settings_store.read_str(s, "view/window", default.window),
                scale=settings_store.read_str(s, "view/scale", default.scale),
                db_range=settings_store.read_float(s, "view/db_range", default.db_range),
                colormap=settings_store.read_str(s, "view/colormap", default.colormap),
            )
        except ValueError as exc:
            log.warning("ignoring stored view settings: %s", exc)
            return default

    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes) and not self.restoreGeometry(QByteArray(geometry)):
            log.debug("could not restore the window geometry")
        if geometry is None:  # first start: a comfortable size that fits the screen
            screen = self.screen().availableGeometry() if self.screen() is not None else None
            width, height = 1400, 860
            if screen is not None and screen.width() > 0:
                width, height = min(width, screen.width()), min(height, screen.height())
            self.resize(max(width, self.minimumSizeHint().width()), max(height, self.minimumSizeHint().height()))
        state = s.value("window/state")
        if isinstance(state, QByteArray | bytes):
            self.restoreState(QByteArray(state))
        panel = self.generate_panel
        panel.set_mode(settings_store.read_str(s, "generate/mode", "free"))
        panel.seconds.setValue(settings_store.read_float(s, "generate/seconds", 2.0))
        panel.seed.setValue(settings_store.read_int(s, "generate/seed", 0))
        panel.temperature.setValue(settings_store.read_float(s, "generate/temperature", 1.0))
        panel.sigma.setValue(settings_store.read_float(s, "generate/sigma", 0.6))
        panel.denoise.setValue(settings_store.read_float(s, "generate/denoise", 0.0))
        panel.show_distribution.setChecked(settings_store.read_bool(s, "generate/show_distribution", False))
        self.convert_panel.restore_state(s)
        self.train_panel.restore_state(s)
        self.compare_action.setChecked(settings_store.read_bool(s, "view/compare", True))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("audio/output_device", self.output_device)
        s.setValue("audio/input_device", self.input_device)
        spec = self.timeline.spectrogram_settings
        for key in ("n_fft", "hop", "window", "scale", "db_range", "colormap"):
            s.setValue(f"view/{key}", getattr(spec, key))
        p = self.generate_panel.params()
        for key in ("mode", "seconds", "seed", "temperature", "sigma", "denoise"):
            s.setValue(f"generate/{key}", getattr(p, key))
        s.setValue("generate/show_distribution", self.generate_panel.show_distribution.isChecked())
        s.setValue("view/compare", self.compare_action.isChecked())
        self.convert_panel.save_state(s)
        self.train_panel.save_state(s)
        s.sync()

    def recent_files(self) -> list[str]:
        return settings_store.read_list(self.settings, "files/recent")

    def _remember_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        recent = [p for p in self.recent_files() if p != path]
        recent.insert(0, path)
        self.settings.setValue("files/recent", recent[: settings_store.MAX_RECENT_FILES])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_files()
        for path in recent:
            action = self.recent_menu.addAction(os.path.basename(path))
            action.setToolTip(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_file(p))
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------------------- devices
    def _refresh_devices(self) -> None:
        from studio.engine.audio import devices

        try:
            found = devices.list_devices()
        except devices.AudioDeviceError as exc:
            self.show_error(
                "No audio devices",
                f"{exc}\n\nPlayback and recording are unavailable: start the sound server (or plug in a "
                "device), then restart the studio.",
            )
            found = []
        outputs = [DEFAULT_DEVICE] + [d.name for d in found if d.has("output") and d.name != DEFAULT_DEVICE]
        inputs = [DEFAULT_DEVICE] + [d.name for d in found if d.has("input") and d.name != DEFAULT_DEVICE]
        self.transport.set_devices(outputs, self.output_device)
        self.record_panel.set_devices(inputs, self.input_device)
        self.convert_panel.set_devices(inputs, outputs, self.input_device, self.output_device)

    def set_output_device(self, name: str) -> None:
        from studio.engine.audio.player import Player

        if name == self.output_device:
            return
        self.player.stop()
        self.output_device = name
        self.player = Player(device=None if name == DEFAULT_DEVICE else name)
        self.settings.setValue("audio/output_device", name)
        self.statusBar().showMessage(f"Output: {name}", 3000)

    def set_input_device(self, name: str) -> None:
        self.input_device = name
        self.settings.setValue("audio/input_device", name)
        self.statusBar().showMessage(f"Input: {name}", 3000)

    # ------------------------------------------------------------------------------- errors and workers
    def show_error(self, title: str, message: str) -> None:
        """Tell the user what happened and what to do, without blocking the event loop."""
        log.warning("%s: %s", title, message.replace("\n", " "))
        self.errors.append((title, message))
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0]}", 10000)
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, title, QMessageBox.StandardButton.Ok, self)
        box.setInformativeText(message)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._forget_box(b))
        box.show()
        self.error_box = box
        self.errorShown.emit(title, message)

    def _forget_box(self, box: QMessageBox) -> None:
        if self.error_box is box:
            self.error_box = None

    def run_worker(self, worker: Worker) -> Worker:
        """Start ``worker`` on its own thread; its errors become messages."""
        worker.failed.connect(self.show_error)
        self._workers.append(worker)
        worker.connect_gui(worker.done, lambda w=worker: self._workers.remove(w) if w in self._workers else None)
        start_worker(worker)
        return worker

    def run_function(self, fn, *args, on_result=None, **kwargs) -> FunctionWorker:
        worker = FunctionWorker(fn, *args, **kwargs)
        if on_result is not None:
            worker.connect_gui(worker.result, on_result)
        self.run_worker(worker)
        return worker

    # ------------------------------------------------------------------------------- takes
    def add_take(self, take: Take, show: bool = True) -> None:
        self.takes_panel.add(take, select=show)
        if show:
            self.show_take(take)

    def show_take(self, take: Take, fit: bool = True) -> None:
        if take is self.current_take:
            return
        self.current_take = take
        self.timeline.set_track(take.track, fit=fit)
        self._show_distribution_of(take)
        self.empty_hint.hide()
        self.takes_panel.select(take)
        self.transport.set_time(0.0, take.track.duration_s)
        self.status_rate.setText(f"{take.sample_rate} Hz")
        self.setWindowTitle(f"{take.name} — Waveform Studio")
        self._update_compare()
        self.takeOpened.emit(take)

    def remove_take(self, take: Take) -> None:
        if not take.saved and self._ask_discard([take]) != "discard":
            return
        if take is self._playing_take:
            self.stop()
        self.takes_panel.remove(take)
        if take is self.current_take:
            self.current_take = None
            remaining = self.takes_panel.takes()
            if remaining:
                self.show_take(remaining[-1])
            else:
                self.timeline.set_track(None)
                self.empty_hint.show()
        self._update_compare()

    def _show_distribution_of(self, take: Take | None) -> None:
        """The heat map of ``take``'s predicted distribution, when it has one and the option is on."""
        wanted = take is not None and self.generate_panel.show_distribution.isChecked()
        self.timeline.set_distribution(take.distribution if wanted else None)

    def _update_compare(self) -> None:
        """Show the current take's pair partner under the views (when "Compare with source" is on)."""
        current = self.current_take
        partner = pair_partner(current, self.takes_panel.current()) if self.compare_action.isChecked() else None
        self.compare.show_partner(partner, current.name if current is not None else "")
        self.compare.follow(self.timeline)

    def _on_ab(self, show_source: bool) -> None:
        """A/B: switch between the selected take and its source, at the same playhead."""
        take = self.takes_panel.current()
        if take is None or take.source is None:
            return
        target = take.source if show_source else take
        # the same moment of the audio in the other take (a conversion of a selection is offset)
        shift = take.source_offset_s if show_source else -take.source_offset_s
        t = max(0.0, self.timeline.playhead + shift)
        playing = self.is_playing()
        self.current_take = target
        self.timeline.set_track(target.track, fit=False)
        self._show_distribution_of(target)
        self.timeline.set_playhead(min(t, target.track.duration_s), follow=False)
        self.status_rate.setText(f"{target.sample_rate} Hz")
        self.statusBar().showMessage(f"Showing {'B: ' + target.name if show_source else 'A: ' + take.name}", 3000)
        if playing:
            self.play_from(min(t, target.track.duration_s))
        self._update_compare()
        self.takeOpened.emit(target)

    # ------------------------------------------------------------------------------- files
    def open_file_dialog(self) -> None:
        start = os.path.dirname(self.recent_files()[0]) if self.recent_files() else os.path.expanduser("~")
        path, _ = QFileDialog.getOpenFileName(self, "Open audio", start, AUDIO_FILTERS)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> FunctionWorker:
        """Decode ``path`` and build its track in a worker; the take opens in the views when it is read."""
        path = os.path.abspath(path)
        self.statusBar().showMessage(f"Opening {path}…")
        return self.run_function(load_track, path, on_result=lambda track, p=path: self._on_file_loaded(p, track))

    def _on_file_loaded(self, path: str, track: AudioTrack) -> None:
        take = Take(track.name, track, "file", path=path)
        self.add_take(take)
        self._remember_recent(path)
        self.statusBar().showMessage(f"Opened {path}", 3000)

    def dragEnterEvent(self, event):  # noqa: N802 (Qt naming)
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(u.isLocalFile() and _audio_extension_ok(u.toLocalFile()) for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):  # noqa: N802 (Qt naming)
        self.dragEnterEvent(event)

    def dropEvent(self, event):  # noqa: N802 (Qt naming)
        urls: list[QUrl] = event.mimeData().urls() if event.mimeData().hasUrls() else []
        paths = [u.toLocalFile() for u in urls if u.isLocalFile() and _audio_extension_ok(u.toLocalFile())]
        for path in paths:
            self.open_file(path)
        if paths:
            event.acceptProposedAction()

    def save_current_dialog(self) -> None:
        if self.current_take is not None:
            self.save_take_dialog(self.current_take)

    def _ask_save_path(self, title: str, suggested: str) -> str | None:
        start = os.path.dirname(self.recent_files()[0]) if self.recent_files() else os.path.expanduser("~")
        path, chosen = QFileDialog.getSaveFileName(
            self, title, os.path.join(start, suggested), ";;".join(SAVE_FILTERS), "WAV (*.wav)"
        )
        if not path:
            return None
        if not os.path.splitext(path)[1]:
            path += SAVE_FILTERS.get(chosen, ".wav")
        return path

    def save_take_dialog(self, take: Take) -> None:
        stem = os.path.splitext(take.name)[0].replace(" ", "-")
        path = self._ask_save_path("Save take", f"{stem}.wav")
        if path:
            self.save_take(take, path)

    def save_take(self, take: Take, path: str, on_saved=None) -> FunctionWorker:
        """Write ``take`` to ``path`` (format from the extension) in a worker."""
        from studio.engine.audio import files

        audio = take.track.samples.copy()

        def saved(_rate: int) -> None:
            take.saved = True
            take.path = path
            self.takes_panel.refresh()
            self._remember_recent(path)
            self.statusBar().showMessage(f"Saved {path}", 4000)
            if on_saved is not None:
                on_saved()

        return self.run_function(files.save, path, audio, take.sample_rate, on_result=saved)

    def export_selection_dialog(self) -> None:
        take, sel = self.current_take, self.timeline.selection()
        if take is None or sel is None:
            self.show_error("Nothing selected", "Drag across the waveform to select a range, then export it.")
            return
        path = self._ask_save_path("Export selection", "selection.wav")
        if path:
            self.export_selection(path)

    def export_selection(self, path: str) -> FunctionWorker | None:
        from studio.engine.audio import files

        take, sel = self.current_take, self.timeline.selection()
        if take is None or sel is None:
            return None
        a, b = (int(round(t * take.sample_rate)) for t in sel)
        return self.run_function(
            files.save, path, take.track.samples[a:b].copy(), take.sample_rate,
            on_result=lambda _r: self.statusBar().showMessage(f"Exported {path}", 4000),
        )

    def unsaved_takes(self) -> list[Take]:
        return [t for t in self.takes_panel.takes() if not t.saved]

    def _ask_discard(self, takes: list[Take]) -> str:
        """Ask before losing unsaved takes: returns "save", "discard" or "cancel"."""
        names = ", ".join(t.name for t in takes)
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Unsaved takes",
            f"{len(takes)} take(s) are not saved: {names}",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText("Save them before they are lost?")
        box.setObjectName("unsaved-prompt")
        answer = box.exec()
        return {
            QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard",
        }.get(QMessageBox.StandardButton(answer), "cancel")

    # ------------------------------------------------------------------------------- playback
    def is_playing(self) -> bool:
        from studio.engine.audio.player import PlayerState

        return self.player.state in (PlayerState.PLAYING, PlayerState.PAUSED)

    def play_from(self, t: float, end: float | None = None) -> None:
        """Play the shown take from ``t`` seconds (to ``end``, or its end)."""
        take = self.current_take
        if take is None or take.track.num_samples == 0:
            return
        sr = take.sample_rate
        a = int(max(0.0, t) * sr)
        b = take.track.num_samples if end is None else min(take.track.num_samples, int(end * sr))
        if b - a < 16:
            a = 0
        try:
            self.player.play_buffer(take.track.samples[a:b], sr)
        except Exception as exc:  # noqa: BLE001 - device errors must reach the user
            self.show_error(*describe_error(exc))
            return
        self._playing_take = take
        self._play_offset = a / sr
        self.timeline.set_playhead(a / sr)
        self.transport.set_playing(True)
        self._apply_loop(self.transport.loop.isChecked())

    def toggle_play(self) -> None:
        from studio.engine.audio.player import PlayerState

        state = self.player.state
        if state == PlayerState.PLAYING:
            self.player.pause()
            self.transport.set_playing(False)
        elif state == PlayerState.PAUSED:
            self.player.resume()
            self.transport.set_playing(True)
        else:
            t = self.timeline.playhead
            take = self.current_take
            if take is not None and t >= take.track.duration_s - 0.01:
                t = 0.0
            self.play_from(t)

    def play_selection(self) -> None:
        sel = self.timeline.selection()
        if sel is None:
            self.play_from(0.0)
        else:
            self.play_from(sel[0], sel[1])

    def stop(self) -> None:
        self.player.stop()
        self.transport.set_playing(False)

    def home(self) -> None:
        if self.is_playing() and self._playing_take is self.current_take:
            self.play_from(0.0)
        self.timeline.set_playhead(0.0)
        self.timeline.set_view_range(0.0, max(0.5, self.timeline.view_range()[1] - self.timeline.view_range()[0]))

    def seek(self, t: float) -> None:
        self.timeline.set_playhead(t, follow=False)
        if self.is_playing() and self._playing_take is self.current_take:
            self.play_from(t)

    def _on_selection(self, start: float, end: float) -> None:
        if self.transport.loop.isChecked():
            self._apply_loop(True)

    def _apply_loop(self, on: bool) -> None:
        take = self._playing_take
        if take is None or not self.is_playing() or self.player.source_sample_rate is None:
            return
        try:
            if not on:
                self.player.set_loop(None)
                return
            sel = self.timeline.selection() or (0.0, take.track.duration_s)
            start = max(0.0, sel[0] - self._play_offset)
            end = sel[1] - self._play_offset
            if end > start:
                self.player.set_loop(start, end)
        except (ValueError, RuntimeError) as exc:
            log.debug("loop not applied: %s", exc)

    # ------------------------------------------------------------------------------- models
    def refresh_lists(self) -> None:
        """Re-read the models and the voices (the Models panel's Refresh)."""
        self.refresh_models()
        self.conversion.refresh_voices()

    def choose_voice(self, name: str) -> None:
        """A voice "loaded" in the Models panel: make it the Convert panel's target and show that panel."""
        if self.convert_panel.select_voice(name):
            self.convert_dock.raise_()
            self.models_panel.state.setText(f"Voice '{name}' is the conversion target (Convert panel)")
        else:
            self.show_error("Voice", f"voice '{name}' is no longer listed; press Refresh")

    def refresh_models(self, select: str | None = None) -> None:
        """Re-read the model folders in a worker; then select ``select`` (a checkpoint stem) if given."""
        from studio.engine import catalog

        def show(entries) -> None:
            self.models_panel.set_entries(entries)
            self.conversion.panel.set_renderers(
                [(e.name, e.card.description) for e in entries if e.card.conditioning == "mel"]
            )
            if select is not None:
                self.models_panel.select_path(str(select))

        self.run_function(catalog.list_models, on_result=show)

    def open_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open checkpoint", os.path.expanduser("~"), "Checkpoints (*.json *.safetensors);;All files (*)"
        )
        if path:
            self.load_model(path, self.models_panel.device.currentText() or "cpu")

    def load_model(self, path: str, device: str = "cpu") -> ModelLoadWorker:
        """Load and warm up a checkpoint in a worker; progress shows in the models panel."""
        worker = ModelLoadWorker(path, device)
        panel = self.models_panel
        panel.set_busy(True)
        panel.progress.setValue(0)
        panel.state.setText(f"Loading {os.path.basename(path)}…")
        worker.connect_gui(worker.progress, lambda pct, stage: (panel.progress.setValue(pct), panel.state.setText(stage)))
        worker.loaded.connect(self._on_model_loaded)
        worker.connect_gui(worker.failed, lambda *_: (panel.state.setText("Loading failed"), panel.progress.setValue(0)))
        worker.connect_gui(worker.done, lambda: panel.set_busy(False))
        self.run_worker(worker)
        return worker

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self.model = loaded
        model = loaded.model
        card = model.card()
        self.models_panel.state.setText(
            f"Loaded {card.name} on {loaded.device.upper()} in {loaded.load_s + loaded.warmup_s:.2f} s"
        )
        self.models_panel.details.setHtml(card_html(card, loaded.path))
        self.generate_panel.set_model(
            card.name, card.family, model.conditioned, card.sample_rate, loaded.device, denoise=model.supports_denoise,
            projection=getattr(model.config, "spectral_projection", None),
        )
        self.generate_panel.device.setCurrentText(loaded.device)
        self.status_model.setText(f"{card.name} · {loaded.device.upper()}")

    # ------------------------------------------------------------------------------- generation
    def _generation_source(self, mode: str) -> tuple[np.ndarray, int, Take, float] | None:
        """What a mel-conditioned generation vocodes: (audio, rate, the take it comes from, where it starts
        in that take in seconds); None for free generation."""
        take = self.current_take
        if mode == "file":
            files = [t for t in self.takes_panel.takes() if t.kind == "file"]
            if take is not None and take.kind != "file":
                take = files[-1] if files else None
            if take is None:
                raise ValueError("no file is open to vocode: open one (Ctrl+O) or pick another mode")
            return take.track.samples.copy(), take.sample_rate, take, 0.0
        if mode == "selection":
            sel = self.timeline.selection()
            if take is None or sel is None:
                raise ValueError("nothing is selected: drag across the waveform to select what to vocode")
            a, b = (int(round(t * take.sample_rate)) for t in sel)
            return take.track.samples[a:b].copy(), take.sample_rate, take, sel[0]
        if mode == "recording":
            if self.last_recording is None:
                raise ValueError("there is no recording yet: record a take (R) first")
            rec = self.last_recording
            return rec.track.samples.copy(), rec.sample_rate, rec, 0.0
        return None

    def generate(self, params: GenerateParams) -> GenerationWorker | None:
        """Start a generation that plays and draws as it is made; the result becomes a new take."""
        if self.generation is not None:
            return None
        if self.model is None:
            self.show_error("No model loaded", "Pick a model in the Models panel and press Load first.")
            return None
        model = self.model.model
        try:
            source = self._generation_source(params.mode) if model.conditioned or params.mode != "free" else None
        except ValueError as exc:
            self.show_error("Cannot generate", str(exc))
            return None
        sr = model.sample_rate
        job = GenerationJob(
            model=model,
            source=None if source is None else source[0],
            source_rate=0 if source is None else source[1],
            num_samples=None if source is not None else max(1, int(params.seconds * sr)),
            seed=params.seed,
            temperature=params.temperature,
            sigma=params.sigma,
            denoise=params.denoise,
            device=params.device if params.device in available_devices() else self.model.device,
            block_size=block_size_for(model),
            options={} if params.projection == "model" else {PROJECTION_OPTION: params.projection},
        )
        classes = distribution_classes(model) if params.show_distribution else 0
        if classes:
            job.distribution_stride = DISTRIBUTION_STRIDE
        self._untitled += 1
        name = f"{model.card().name} #{self._untitled}"
        take = Take(name, AudioTrack(sr, name=name, complete=False), "generation", saved=False,
                    source=None if source is None else source[2], source_offset_s=0.0 if source is None else source[3])
        if classes:
            take.distribution = DistributionTrack(sr, DISTRIBUTION_STRIDE, classes)
        try:
            feeder = self.player.play_stream(sr)
            self._playing_take = take
            self._play_offset = 0.0
            self.transport.set_playing(True)
        except Exception as exc:  # noqa: BLE001 - generate silently when the device is gone
            self.show_error(*describe_error(exc))
            feeder = None
        worker = GenerationWorker(job, feeder)
        worker.connect_gui(worker.blocks, take.track.append)
        if take.distribution is not None:
            worker.connect_gui(worker.distribution, take.distribution.append)
        worker.connect_gui(worker.progress, lambda d, t, e: self.generate_panel.show_progress(d, t, e, sr))
        worker.connect_gui(
            worker.finished_generation, lambda cancelled, made, tk=take: self._on_generation_done(tk, cancelled, made)
        )
        self.generation = worker
        self.generation_take = take
        self.generate_panel.set_running(True)
        self.generate_panel.show_progress(0, 0, 0.0, sr)
        self.add_take(take)
        self.run_worker(worker)
        return worker

    def cancel_generation(self) -> None:
        if self.generation is not None:
            self.generation.cancel()
            self.statusBar().showMessage("Cancelling…", 2000)

    def _on_generation_done(self, take: Take, cancelled: bool, made: int) -> None:
        take.track.mark_complete()
        if take is self.current_take:
            self.timeline.refresh()
        self.generation = None
        self.generation_take = None
        self.generate_panel.set_running(False)
        self.takes_panel.refresh()
        verb = "Cancelled" if cancelled else "Generated"
        self.statusBar().showMessage(f"{verb}: {made / take.sample_rate:.2f} s kept in take '{take.name}'", 5000)
        if made == 0:
            take.saved = True  # nothing to lose

    # ------------------------------------------------------------------------------- recording
    def toggle_recording(self) -> None:
        if self.recorder is None:
            self.start_recording()
        else:
            self.stop_recording()

    def recordings_dir(self) -> str:
        folder = os.environ.get("STUDIO_RECORDINGS_DIR") or os.path.join(
            os.path.expanduser("~"), "Music", "Waveform Studio"
        )
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            folder = tempfile.gettempdir()
        return folder

    def start_recording(self) -> None:
        from studio.engine.audio.recorder import Recorder

        path = os.path.join(self.recordings_dir(), datetime.now().strftime("take-%Y%m%d-%H%M%S.wav"))
        try:
            recorder = Recorder(path, device=None if self.input_device == DEFAULT_DEVICE else self.input_device)
            recorder.start()
        except Exception as exc:  # noqa: BLE001 - device errors must reach the user
            self.show_error(*describe_error(exc))
            self.record_panel.set_recording(False)
            return
        self.recorder = recorder
        self.record_panel.set_recording(True)
        self.record_dock.raise_()
        self.statusBar().showMessage(f"Recording to {path}")

    def stop_recording(self) -> None:
        """Stop recording: a worker finishes the file (joins the recorder's writer) and reads the take back."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        self.record_panel.set_recording(False)
        self.run_function(finish_recording, recorder, on_result=self._on_recording_loaded)

    def _on_recording_loaded(self, finished: FinishedRecording) -> None:
        take = Take(finished.track.name, finished.track, "recording", path=finished.path)
        self.last_recording = take
        self.add_take(take)
        gaps = finished.gaps
        lost = f"; {len(gaps)} gap(s) where audio was lost are silence" if gaps else ""
        self.statusBar().showMessage(f"Recorded {take.track.duration_s:.2f} s to {finished.path}{lost}", 5000)

    # ------------------------------------------------------------------------------- the 30 Hz poll
    def _poll(self) -> None:
        player = self.player
        playing = self.is_playing()
        if playing and self._playing_take is self.current_take:
            t = self._play_offset + player.position_s
            self.timeline.set_playhead(t)
        take = self.current_take
        self.compare.follow(self.timeline)
        self.transport.set_time(self.timeline.playhead, take.track.duration_s if take is not None else 0.0)
        if not playing and self.transport.playing:
            self.transport.set_playing(False)
        level = player.output_level
        self.transport.meter.set_levels(level.peak_db, level.rms_db, level.peak_hold_db, level.clipped)
        if player.device_name:
            self.status_device.setText(player.device_name)
        self.status_latency.setText(f"latency {player.latency_s * 1000:4.0f} ms")
        self.status_underflows.setText(f"underruns {player.underflows}")
        now = (time.process_time(), time.perf_counter())
        if now[1] - self._cpu_mark[1] >= 1.0:
            self._cpu_load = 100.0 * (now[0] - self._cpu_mark[0]) / (now[1] - self._cpu_mark[1]) / (os.cpu_count() or 1)
            self._cpu_mark = now
            self.status_load.setText(f"engine {self._cpu_load:3.0f} %")
        if self.generation_take is not None:
            self.takes_panel.refresh()
        self._poll_recorder()
        self.conversion.poll()

    def _poll_recorder(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        from studio.engine.audio.recorder import RecorderState

        if recorder.state != RecorderState.RECORDING and recorder.state != RecorderState.IDLE:
            error = recorder.last_error
            self.stop_recording()
            if error is not None:
                self.show_error(*describe_error(error))
            return
        levels = recorder.level
        self.record_panel.show_levels(levels.peak_db, levels.rms_db, levels.peak_hold_db, levels.clipped)
        self.record_panel.show_status(recorder.elapsed_s, recorder.overflows, recorder.gaps)
        rate = recorder.sample_rate
        self.record_panel.show_recent(recorder.recent(int(LIVE_WAVEFORM_S * rate)), rate)

    # ------------------------------------------------------------------------------- closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt naming)
        if self._shut_down:
            event.accept()
            return
        unsaved = self.unsaved_takes()
        if unsaved:
            answer = self._ask_discard(unsaved)
            if answer == "cancel":
                event.ignore()
                return
            if answer == "save":
                for take in unsaved:
                    path = self._ask_save_path(f"Save {take.name}", f"{take.name.replace(' ', '-')}.wav")
                    if path is None:
                        event.ignore()
                        return
                    from studio.engine.audio import files

                    try:
                        files.save(path, take.track.samples, take.sample_rate)
                    except Exception as exc:  # noqa: BLE001
                        self.show_error(*describe_error(exc))
                        event.ignore()
                        return
        self.save_settings()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop timers, audio and workers (idempotent)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._poll_timer.stop()
        if self.generation is not None:
            self.generation.cancel()
        self.conversion.shutdown()
        self.training.shutdown()
        if self.recorder is not None:
            try:
                self.recorder.stop()
            except Exception:  # noqa: BLE001
                log.debug("stopping the recorder failed", exc_info=True)
            self.recorder = None
        self.player.stop()
        self.timeline.shutdown()
        self.compare.shutdown()
        wait_for_workers(5000)
