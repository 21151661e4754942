"""A long-lived worker that computes spectrogram images off the GUI thread, newest request first.

The GUI submits ``SpectrogramJob``s (each with a ``generation``); a job older than the newest
generation of its ``kind`` is skipped, so zooming quickly never queues stale work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from studio.workers.base import describe_error
from studio.workers.spectrum import SpectrogramSettings, spectrogram_db

log = logging.getLogger(__name__)


@dataclass
class SpectrogramJob:
    """Columns ``first_column .. first_column + columns`` at ``hop`` samples of ``audio`` (read-only view)."""

    kind: str  # "overview" or "detail"
    generation: int
    audio: np.ndarray
    sample_rate: int
    settings: SpectrogramSettings
    first_column: int
    columns: int
    hop: int


@dataclass
class SpectrogramResult:
    job: SpectrogramJob
    image: np.ndarray  # float32 dB [rows, columns]


class _SpectrogramWorker(QObject):
    computed = Signal(object)  # SpectrogramResult
    failed = Signal(str, str)

    def __init__(self, latest: dict[str, int]) -> None:
        super().__init__()
        self._latest = latest

    @Slot(object)
    def compute(self, job: SpectrogramJob) -> None:
        if job.generation < self._latest.get(job.kind, 0):
            return
        try:
            image = spectrogram_db(job.audio, job.sample_rate, job.settings, job.first_column, job.columns, job.hop)
        except Exception as exc:  # noqa: BLE001
            log.exception("spectrogram failed")
            self.failed.emit(*describe_error(exc))
            return
        self.computed.emit(SpectrogramResult(job, image))


class SpectrogramService(QObject):
    """Owns the worker thread. ``submit(job)`` from the GUI thread; results arrive on ``computed``."""

    computed = Signal(object)
    failed = Signal(str, str)
    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest: dict[str, int] = {}
        self._thread = QThread()
        self._thread.setObjectName("SpectrogramWorker")
        self._worker = _SpectrogramWorker(self._latest)
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.compute)
        self._worker.computed.connect(self._deliver)
        self._worker.failed.connect(self.failed)
        self._thread.start()

    def submit(self, job: SpectrogramJob) -> None:
        self._latest[job.kind] = max(job.generation, self._latest.get(job.kind, 0))
        self._submit.emit(job)

    def _deliver(self, result: SpectrogramResult) -> None:
        if result.job.generation >= self._latest.get(result.job.kind, 0):
            self.computed.emit(result)

    def shutdown(self) -> None:
        self._thread.quit()
        self._thread.wait(5000)
