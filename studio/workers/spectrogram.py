"""A long-lived worker that computes spectrogram images off the GUI thread, newest request first.

The GUI submits ``SpectrogramJob``s (each with a ``generation``); a job older than the newest
generation of its ``kind`` is skipped, so zooming quickly never queues stale work.

Threads: ``SpectrogramService`` lives on the GUI thread (``submit``, ``shutdown`` and its signals);
``_SpectrogramWorker.compute`` runs on the service's own QThread and only emits signals.
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
    """Columns ``first_column .. first_column + columns`` at ``hop`` samples of ``audio``.

    kind: "overview" (the whole track, coarse), "detail" (the visible range) or "live" (overview
    columns for samples that arrived since). ``audio`` is a read-only float32 [n] view: the worker
    reads it while the GUI may append to the track, so it must cover only samples that never change.
    """

    kind: str
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
    failed = Signal(object, str, str)  # SpectrogramJob, title, message

    def __init__(self, latest: dict[str, int]) -> None:
        super().__init__()
        self._latest = latest  # written by the GUI thread; a stale read only costs one extra job

    @Slot(object)
    def compute(self, job: SpectrogramJob) -> None:
        if job.generation < self._latest.get(job.kind, 0):
            return
        try:
            image = spectrogram_db(job.audio, job.sample_rate, job.settings, job.first_column, job.columns, job.hop)
        except Exception as exc:  # noqa: BLE001 - a failed image must not end the thread
            log.exception("spectrogram (%s, %d columns) failed", job.kind, job.columns)
            self.failed.emit(job, *describe_error(exc))
            return
        self.computed.emit(SpectrogramResult(job, image))


class SpectrogramService(QObject):
    """Owns the worker thread. ``submit(job)`` from the GUI thread; results arrive on ``computed``
    (``SpectrogramResult``), errors on ``failed(job, title, message)`` — both queued to the GUI thread
    and only for jobs of the newest generation of their kind."""

    computed = Signal(object)
    failed = Signal(object, str, str)
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
        self._worker.failed.connect(self._deliver_failure)
        self._thread.start()

    def submit(self, job: SpectrogramJob) -> None:
        self._latest[job.kind] = max(job.generation, self._latest.get(job.kind, 0))
        self._submit.emit(job)

    def _is_current(self, job: SpectrogramJob) -> bool:
        return job.generation >= self._latest.get(job.kind, 0)

    def _deliver(self, result: SpectrogramResult) -> None:
        if self._is_current(result.job):
            self.computed.emit(result)

    def _deliver_failure(self, job: SpectrogramJob, title: str, message: str) -> None:
        if self._is_current(job):
            self.failed.emit(job, title, message)

    def shutdown(self) -> None:
        """Stop the thread after the job it is computing (waits up to 5 s)."""
        self._thread.quit()
        if not self._thread.wait(5000):
            log.warning("the spectrogram thread did not stop within 5 s")
