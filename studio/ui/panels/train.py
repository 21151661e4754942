"""The train panel: data (a folder or the session's takes), family, feature profile, what the model
is conditioned on (mel = a vocoder, or free generation; optionally one speaker per sub-folder), steps,
batch, model name, optional config overrides; Train / Cancel; progress, steps/s and time left; a live plot
of the training loss and the held-out loss. Widgets only (GUI thread): ``TrainingController`` runs it."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from studio.ui import settings as settings_store
from studio.ui import theme
from studio.ui.timefmt import format_time
from studio.ui.widgets.common import quiet_progress, readout_label
from studio.ui.widgets.run_buttons import run_buttons

HELDOUT_COLOUR = "#ffb74a"


@dataclass
class TrainParams:
    """What the panel asks for. data: "folder" or "takes"; batch 0 = the family's default;
    config: JSON text of config overrides ("" = none). free: no mel conditioning (the model generates
    freely, as ``studio train --unconditional``). speakers: one speaker per sub-folder of ``folder``
    (a multi-speaker model, ``n_speakers`` = their count)."""

    data: str
    folder: str
    family: str
    profile: str
    steps: int
    batch: int
    name: str
    config: str
    free: bool = False
    speakers: bool = False


class TrainPanel(QWidget):
    """Emits ``trainRequested(TrainParams)``, ``cancelRequested()``, ``browseRequested()`` and
    ``familyChanged(family)`` (the controller answers with the family's default profile)."""

    trainRequested = Signal(object)
    cancelRequested = Signal()
    browseRequested = Signal()
    familyChanged = Signal(str)

    def __init__(self, families: list[str], profiles: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.from_folder = QRadioButton("folder")
        self.from_takes = QRadioButton("the open takes")
        self.from_folder.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.from_folder)
        group.addButton(self.from_takes)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a folder of audio files (or a prepared set)")
        self.browse = QPushButton()
        self.browse.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon))
        self.browse.setFixedWidth(34)
        self.browse.setToolTip("Choose the folder")
        self._abilities = (True, True)  # (free generation, speakers) of the chosen family
        self.from_takes.toggled.connect(self._on_source_toggled)
        self.family = QComboBox()
        self.family.addItems(families)
        self.profile = QComboBox()
        self.profile.addItems(profiles)
        self.profile.setToolTip("Feature profile (mel settings) the model is trained with")
        self.free = QCheckBox("free generation (no mel input)")
        self.free.setToolTip("Train a model that generates without a mel (e.g. music), instead of a vocoder")
        self.speakers = QCheckBox("one speaker per sub-folder")
        self.speakers.setToolTip("A multi-speaker model: each sub-folder of the data folder holds one speaker's audio")
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setValue(1000)
        self.steps.setSingleStep(100)
        self.batch = QSpinBox()
        self.batch.setRange(0, 4096)
        self.batch.setSpecialValueText("family default")
        self.name = QLineEdit("my-model")
        self.name.setToolTip("The model's name in the Models panel (saved in your models folder)")
        self.config = QLineEdit()
        self.config.setPlaceholderText('config overrides, e.g. {"layers": 8}')
        self.config.setToolTip("JSON object of family config fields (as studio train --config)")
        self.train_button, self.cancel_button, buttons = run_buttons("Train")
        self.cancel_button.setToolTip("Stop after the current step; a checkpoint is saved")
        self.progress = quiet_progress(1000)
        self.readout = readout_label(wrap=True)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").setWidth(36)
        self.plot.addLegend(offset=(-4, 4), labelTextSize="8pt")
        self.plot.setDownsampling(auto=True, mode="mean")  # long runs: a million points stay cheap to draw
        self.plot.setClipToView(True)
        self.loss_curve = self.plot.plot(pen=pg.mkPen(theme.ACCENT, width=1), name="train")
        self.heldout_curve = self.plot.plot(
            pen=pg.mkPen(HELDOUT_COLOUR, width=1), symbol="o", symbolSize=5, symbolBrush=HELDOUT_COLOUR, name="held-out"
        )

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        source_row = QHBoxLayout()
        source_row.addWidget(self.from_folder)
        source_row.addWidget(self.from_takes)
        source_row.addStretch(1)
        form = QFormLayout()
        form.setHorizontalSpacing(10)
        form.addRow("data", source_row)
        form.addRow("", folder_row)
        form.addRow("family", self.family)
        form.addRow("profile", self.profile)
        conditioning_row = QHBoxLayout()
        conditioning_row.addWidget(self.free)
        conditioning_row.addWidget(self.speakers)
        conditioning_row.addStretch(1)
        form.addRow("input", conditioning_row)
        form.addRow("steps", self.steps)
        form.addRow("batch", self.batch)
        form.addRow("name", self.name)
        form.addRow("config", self.config)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.readout)
        layout.addWidget(self.plot, 1)

        self.train_button.clicked.connect(lambda: self.trainRequested.emit(self.params()))
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.browse.clicked.connect(self.browseRequested)
        self.family.currentTextChanged.connect(self.familyChanged)
        self.clear_plot()

    def _on_source_toggled(self, takes: bool) -> None:
        self.folder.setEnabled(not takes)
        self.browse.setEnabled(not takes)
        self.speakers.setEnabled(not takes and self._abilities[1])  # takes have no speaker folders

    def params(self) -> TrainParams:
        return TrainParams(
            data="takes" if self.from_takes.isChecked() else "folder",
            folder=self.folder.text().strip(),
            family=self.family.currentText(),
            profile=self.profile.currentText(),
            steps=int(self.steps.value()),
            batch=int(self.batch.value()),
            name=self.name.text().strip(),
            config=self.config.text().strip(),
            free=self.free.isChecked() and self.free.isEnabled(),
            speakers=self.speakers.isChecked() and self.speakers.isEnabled(),
        )

    def set_family_abilities(self, free_generation: bool, speakers: bool) -> None:
        """Enable the conditioning choices the chosen family supports (the controller asks the engine)."""
        self.free.setEnabled(free_generation)
        self.speakers.setEnabled(speakers and not self.from_takes.isChecked())
        self._abilities = (free_generation, speakers)

    def save_state(self, s) -> None:
        p = self.params()
        for key in ("data", "folder", "family", "profile", "steps", "batch", "name", "config"):
            s.setValue(f"train/{key}", getattr(p, key))
        s.setValue("train/free", self.free.isChecked())
        s.setValue("train/speakers", self.speakers.isChecked())

    def restore_state(self, s) -> None:
        self.from_takes.setChecked(settings_store.read_str(s, "train/data", "folder") == "takes")
        self.folder.setText(settings_store.read_str(s, "train/folder", ""))
        family = settings_store.read_str(s, "train/family", self.family.currentText())
        if self.family.findText(family) >= 0:
            self.family.setCurrentText(family)
        profile = settings_store.read_str(s, "train/profile", self.profile.currentText())
        if self.profile.findText(profile) >= 0:
            self.profile.setCurrentText(profile)
        self.steps.setValue(settings_store.read_int(s, "train/steps", 1000))
        self.batch.setValue(settings_store.read_int(s, "train/batch", 0))
        self.name.setText(settings_store.read_str(s, "train/name", "my-model"))
        self.config.setText(settings_store.read_str(s, "train/config", ""))
        self.free.setChecked(settings_store.read_bool(s, "train/free", False))
        self.speakers.setChecked(settings_store.read_bool(s, "train/speakers", False))

    def set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.from_folder, self.from_takes, self.family, self.profile, self.steps, self.batch,
                       self.name, self.config):
            widget.setEnabled(not running)
        free_ok, speakers_ok = self._abilities
        self.free.setEnabled(not running and free_ok)
        self.speakers.setEnabled(not running and speakers_ok and not self.from_takes.isChecked())
        on_folder = not self.from_takes.isChecked()
        self.folder.setEnabled(not running and on_folder)
        self.browse.setEnabled(not running and on_folder)

    def clear_plot(self) -> None:
        self.steps_seen: list[int] = []
        self.losses: list[float] = []
        self.heldout_steps: list[int] = []
        self.heldout_losses: list[float] = []
        self.loss_curve.setData([], [])
        self.heldout_curve.setData([], [])

    def show_progress(self, report, points: list[tuple[int, float]] | None = None) -> None:
        """Add a ``TrainProgress`` report (and the (step, loss) ``points`` since the last one) to the plot and readout."""
        fresh = [(step, loss) for step, loss in (points or []) if not self.steps_seen or step > self.steps_seen[-1]]
        if fresh:
            self.steps_seen.extend(step for step, _ in fresh)
            self.losses.extend(loss for _, loss in fresh)
            self.loss_curve.setData(self.steps_seen, self.losses)
        if report.event == "eval" and report.heldout_loss is not None:
            if self.heldout_steps and self.heldout_steps[-1] == report.step:
                self.heldout_losses[-1] = report.heldout_loss
            else:
                self.heldout_steps.append(report.step)
                self.heldout_losses.append(report.heldout_loss)
            self.heldout_curve.setData(self.heldout_steps, self.heldout_losses)
        total = max(1, report.total_steps)
        self.progress.setValue(int(1000 * report.step / total))
        loss = "—" if report.loss is None else f"{report.loss:.3f}"
        heldout = "—" if report.heldout_loss is None else f"{report.heldout_loss:.3f}"
        rate = report.steps_per_s
        left = (total - report.step) / rate if rate > 0 else float("nan")
        eta = format_time(left, False)
        self.readout.setText(
            f"step {report.step:,} / {total:,}   {rate:5.2f} steps/s   {eta} left\n"
            f"loss {loss}   held-out {heldout}   lr {report.lr:.2g}"
        )
