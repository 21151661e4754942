"""Training a model off the GUI thread: ``train()`` on a QThread, progress to the GUI, cancel that keeps a checkpoint.

Threads: ``TrainingWorker.work`` runs on its QThread. The engine calls the progress callback on that
thread after every step; the worker forwards at most ``EMIT_HZ`` step reports a second (plus every
evaluation, checkpoint, start and end) as ``progress(TrainProgress, points)`` so a fast run cannot
flood the GUI's event queue; ``points`` lists every (step, loss) since the previous signal, so the
loss plot misses no step. ``cancel()`` (any thread) sets the engine's CancelToken: the run stops after the
current step and writes a checkpoint first.

Training on the session's takes: ``takes_audio`` holds (name, float32 [T], rate) triples; the worker
writes them as WAV files into ``takes_dir`` before training (never on the GUI thread).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from studio.workers.base import Worker

log = logging.getLogger(__name__)

EMIT_HZ = 10


def write_takes(takes_audio: list[tuple[str, np.ndarray, int]], folder: str) -> list[str]:
    """Write each (name, audio [T], rate) as ``folder/NN-name.wav``; returns the paths."""
    from studio.engine.audio import files

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (name, audio, rate) in enumerate(takes_audio):
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.splitext(name)[0]).strip("-") or "take"
        path = os.path.join(folder, f"{i:02d}-{stem}.wav")
        files.save(path, np.asarray(audio, np.float32), int(rate))
        paths.append(path)
    return paths


class TrainingWorker(Worker):
    """Runs one training. Signals: ``progress(TrainProgress, [(step, loss), ...])``; ``finished_training(TrainResult)`` when the
    run ended (completed or cancelled; ``failed`` otherwise); ``done`` last."""

    progress = Signal(object, object)
    finished_training = Signal(object)

    def __init__(
        self,
        options: Any,
        takes_audio: list[tuple[str, np.ndarray, int]] | None = None,
        takes_dir: str | None = None,
    ) -> None:
        super().__init__()
        from studio.engine.models.base import CancelToken

        self.options = options
        self.takes_audio = takes_audio
        self.takes_dir = takes_dir
        self.token = CancelToken()
        self.result: Any = None
        self._last_emit = 0.0
        self._points: list[tuple[int, float]] = []

    def cancel(self) -> None:
        """Stop after the current step; a checkpoint is written (any thread)."""
        self.token.cancel()

    def _on_progress(self, report: Any) -> None:
        if report.event == "step" and report.loss is not None:
            self._points.append((report.step, report.loss))
        now = time.perf_counter()
        if report.event != "step" or now - self._last_emit >= 1.0 / EMIT_HZ or report.step >= report.total_steps:
            self._last_emit = now
            points, self._points = self._points, []
            self.progress.emit(report, points)

    def work(self) -> None:
        from studio.engine.train.loop import train

        if self.takes_audio is not None:
            if not self.takes_audio:
                raise ValueError("there are no takes to train on: open, record or generate some first")
            self.options.data = write_takes(self.takes_audio, self.takes_dir or "studio-train-takes")
        self.result = train(self.options, progress=self._on_progress, cancel=self.token)
        log.info("training %s ended: %s at step %d", self.options.out, self.result.status, self.result.step)
        self.finished_training.emit(self.result)
