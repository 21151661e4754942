"""Training in the window: the Train panel's actions and its worker.

``TrainingController`` belongs to the main window (GUI thread). It turns the panel's settings into
``TrainOptions`` (the engine's public API), runs ``train()`` in a ``TrainingWorker``, feeds the plot and
readouts from the worker's throttled progress signal, and when the run ends (completed or cancelled —
a checkpoint is written either way) refreshes the Models panel and selects the new model there.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QFileDialog

from studio.ui.panels.train import TrainPanel, TrainParams
from studio.workers.training import TrainingWorker

if TYPE_CHECKING:
    from studio.ui.mainwindow import MainWindow

log = logging.getLogger(__name__)


def warm_training_imports() -> float:
    """Import what the first training step imports lazily (torch.optim → torch._dynamo, ~0.3–0.7 s here);
    returns the seconds it took. Run in a worker when the Train panel is first shown: those imports hold
    the GIL in long C calls, so doing them then keeps them from stalling the GUI during training."""
    import time

    start = time.perf_counter()
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    return time.perf_counter() - start


def families_and_profiles() -> tuple[list[str], list[str]]:
    from studio.engine.audio.features import PRESETS
    from studio.engine.train.options import FAMILY_RECIPES

    return list(FAMILY_RECIPES), list(PRESETS)


class TrainingController:
    """Wires ``panel`` to ``window``. ``worker`` is the running training (None when idle);
    ``last_result`` the ``TrainResult`` of the latest finished run."""

    def __init__(self, window: MainWindow, panel: TrainPanel) -> None:
        self.window = window
        self.panel = panel
        self.worker: TrainingWorker | None = None
        self.last_result: Any = None
        self._takes_dir: str | None = None
        self.warm_s: float | None = None  # how long warming the training imports took (None: not yet)
        self._warming = False
        panel.trainRequested.connect(self.train)
        panel.cancelRequested.connect(self.cancel)
        panel.browseRequested.connect(self.browse)
        panel.familyChanged.connect(self._on_family)
        self._on_family(panel.family.currentText())

    def warm_up(self) -> None:
        """Start warming the training imports once (call when the Train panel becomes visible)."""
        if self._warming or self.warm_s is not None:
            return
        self._warming = True
        self.window.run_function(warm_training_imports, on_result=self._on_warm)

    def _on_warm(self, seconds: float) -> None:
        self.warm_s = seconds
        log.info("training imports warmed in %.2f s", seconds)
        self._show_family_abilities(self.panel.family.currentText())

    def _show_family_abilities(self, family: str) -> None:
        """Enable the panel's free-generation / speakers choices the family supports. Asking needs the
        model families (torch): only once they are imported, so the GUI thread never waits for torch;
        until then both stay enabled and ``options_for`` refuses what the family cannot do."""
        if "studio.engine.models.base" not in sys.modules:
            return
        from studio.engine.train.options import supports_free_generation, supports_speakers

        try:
            self.panel.set_family_abilities(supports_free_generation(family), supports_speakers(family))
        except ValueError:  # not a family (cannot happen from the combo box)
            self.panel.set_family_abilities(False, False)

    def _on_family(self, family: str) -> None:
        from studio.engine.train.options import recipe_for

        profile = recipe_for(family).profile
        if self.panel.profile.findText(profile) >= 0:
            self.panel.profile.setCurrentText(profile)
        self._show_family_abilities(family)

    def browse(self) -> None:
        start = self.panel.folder.text() or os.path.expanduser("~")
        folder = QFileDialog.getExistingDirectory(self.window, "Training data folder", start)
        if folder:
            self.panel.folder.setText(folder)
            self.panel.from_folder.setChecked(True)

    def options_for(self, params: TrainParams) -> Any:
        """``TrainOptions`` for the panel's settings; ValueError naming what to fix."""
        from studio.engine.train.options import (
            TrainOptions,
            free_generation_config,
            multi_speaker_config,
            parse_config,
        )

        if not params.name or any(c in params.name for c in "/\\") or params.name.startswith("."):
            raise ValueError(f"model name {params.name!r} cannot be a file name: use letters, digits, '-' or '_'")
        if params.data == "folder":
            if not params.folder:
                raise ValueError("choose a folder of audio files to train on (or train on the open takes)")
            if not os.path.exists(os.path.expanduser(params.folder)):
                raise ValueError(f"{params.folder}: no such folder")
            data = [os.path.expanduser(params.folder)]
        else:
            data = ["<takes>"]  # replaced by the worker with the takes written to disk
        config = parse_config(params.config)
        if params.free:
            config = free_generation_config(params.family, config)
        if params.speakers:
            if params.data != "folder":
                raise ValueError("a multi-speaker model trains on a folder with one sub-folder per speaker, not on the open takes")
            config, _ = multi_speaker_config(params.family, config, data[0])
        options = TrainOptions(
            family=params.family,
            data=data,
            out=params.name,
            config=config,
            profile=params.profile or None,
            steps=params.steps,
            batch=params.batch or None,
            checkpoint_every=max(1, min(500, params.steps)),
            eval_every=max(1, params.steps // 10),
            log_every=max(1, min(10, params.steps)),
        )
        options.validate()
        return options

    def train(self, params: TrainParams) -> TrainingWorker | None:
        """Start a training run in a worker (one at a time)."""
        if self.worker is not None:
            return None
        w = self.window
        try:
            options = self.options_for(params)
        except ValueError as exc:
            w.show_error("Cannot train", str(exc))
            return None
        takes_audio = None
        if params.data == "takes":
            takes = [t for t in w.takes_panel.takes() if t.track.complete and t.track.num_samples > 0]
            if not takes:
                w.show_error("Cannot train", "there are no finished takes: open, record or generate some first")
                return None
            takes_audio = [(t.name, t.track.samples.copy(), t.sample_rate) for t in takes]
            self._takes_dir = tempfile.mkdtemp(prefix="studio-train-takes-")
        worker = TrainingWorker(options, takes_audio, self._takes_dir)
        self.worker = worker
        self.panel.clear_plot()
        self.panel.set_running(True)
        self.panel.readout.setText(f"Preparing {params.family} '{params.name}'…")
        worker.connect_gui(worker.progress, self.panel.show_progress)
        worker.connect_gui(worker.finished_training, self._on_finished)
        worker.connect_gui(worker.failed, lambda *_: self.panel.readout.setText("Training stopped with an error"))
        worker.connect_gui(worker.done, self._on_done)
        w.run_worker(worker)
        w.statusBar().showMessage(f"Training {params.family} '{params.name}' for {params.steps} steps…", 4000)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.panel.readout.setText(self.panel.readout.text() + "\ncancelling: saving a checkpoint…")

    def _on_finished(self, result: Any) -> None:
        self.last_result = result
        path = str(result.checkpoint)
        verb = "Cancelled at" if result.status == "cancelled" else "Finished"
        self.window.statusBar().showMessage(f"{verb} step {result.step}: saved {path}", 6000)
        loss = "—" if result.heldout_loss is None else f"{result.heldout_loss:.3f}"
        self.panel.readout.setText(
            f"{verb} step {result.step} in {result.wall_s:.1f} s   held-out {loss}\n{os.path.basename(path)} is in Models"
        )
        self.window.refresh_models(select=path)

    def _on_done(self) -> None:
        self.worker = None
        self.panel.set_running(False)

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
