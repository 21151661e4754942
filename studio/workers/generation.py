"""Generating audio off the GUI thread, streamed to the player and to the views as it is made.

``GenerationWorker`` iterates ``model.stream(request)`` on its QThread. Each block goes straight into
the player's live feeder (so playback starts with the first block) and, batched to at most
``EMIT_HZ`` signals a second, to the GUI as numpy arrays. Conditioning mels (vocoding a file, a
selection or a recording) are computed here too, never on the GUI thread.

Predicted distribution (WaveNet, WaveRNN): with ``GenerationJob.distribution_stride`` > 0 the worker asks
the model for its distribution every that many samples (``options['on_distribution']``, called on this
worker's thread), sums the classes into at most ``MAX_VIEW_BINS`` bins and emits the rows with the blocks.
With 0 (the default) the model is not asked at all.

Cancel: the GUI calls ``cancel()`` (thread-safe); the model checks the token between blocks, so the
worker ends within one block — keep ``block_size`` small enough (see ``block_size_for``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from studio.engine.models.generation_settings import (  # noqa: F401 - the projection's names, for the window
    DEFAULT_PROJECTION,
    PROJECTION_OPTION,
    GenerationSettings,
)
from studio.workers.base import Worker

log = logging.getLogger(__name__)

EMIT_HZ = 25


@dataclass
class GenerationJob(GenerationSettings):
    """What to generate, and how (the request's ``GenerationSettings``, keyword-only; ``block_size``
    defaults to 512 here).

    source: mono float32 audio to vocode (None = free generation) at ``source_rate`` Hz.
    num_samples: length of a free generation (samples at the model's rate).
    """

    model: Any
    source: np.ndarray | None = None
    source_rate: int = 0
    num_samples: int | None = None
    block_size: int = field(default=512, kw_only=True)
    distribution_stride: int = 0
    """> 0: report the predicted distribution of every that many samples (models that support it); 0: off."""


DISTRIBUTION_STRIDE = 32
"""Samples between two rows of the predicted-distribution view (500 columns a second at 16 kHz)."""


def distribution_classes(model: Any) -> int:
    """Classes of the distribution ``model`` reports while generating; 0 when it reports none."""
    from studio.engine.models.distribution import distribution_classes as classes_of

    return classes_of(model)


def block_size_for(model: Any) -> int:
    """Samples per yielded block: small for autoregressive models so Cancel is quick."""
    return 256 if getattr(model, "receptive_field", 1) > 1 else 4096


def mel_for(model: Any, audio: np.ndarray, rate: int) -> np.ndarray:
    """Conditioning frames [n_mels, frames] for ``audio`` with the model's feature profile."""
    from studio.engine.audio import features
    from studio.engine.audio.resample import resample

    profile = model.profile
    if rate != profile.sample_rate:
        audio = resample(audio, rate, profile.sample_rate)
    return np.asarray(features.compute_mel(np.ascontiguousarray(audio, np.float32), profile), np.float32)


class GenerationWorker(Worker):
    """Streams one generation.

    Signals: ``started_generation(total_samples, sample_rate)`` before the first block;
    ``blocks(np.ndarray float32 [n])`` new samples, in order; ``distribution(first_sample, rows)`` the
    predicted distribution of samples ``first_sample + i * job.distribution_stride`` (float32 ``[n, bins]``,
    each row summing to 1), emitted just before the blocks that hold them (only when asked for, see the
    module doc); ``progress(done, total, elapsed_s)``;
    ``finished_generation(cancelled, samples_made)`` at the end (also after ``failed``).
    """

    started_generation = Signal(int, int)
    blocks = Signal(object)
    distribution = Signal(int, object)
    progress = Signal(int, int, float)
    finished_generation = Signal(bool, int)

    def __init__(self, job: GenerationJob, feeder: Any | None = None) -> None:
        super().__init__()
        from studio.engine.models.base import CancelToken

        self.job = job
        self.feeder = feeder
        self.token = CancelToken()
        self.cancel_requested_at: float | None = None
        self.cancel_latency_s: float | None = None  # from cancel() to the end of the loop
        self._rows: list[np.ndarray] = []  # distribution rows not yet emitted (worker thread)
        self._rows_start = 0

    def cancel(self) -> None:
        """Ask the generation to stop after the current block (any thread)."""
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.perf_counter()
        self.token.cancel()

    def _options(self, job: GenerationJob) -> dict[str, Any]:
        """The request's options: the job's, plus the distribution hook when asked for and supported."""
        options = dict(job.options)
        self._rows = []
        if job.distribution_stride > 0 and getattr(job.model, "supports_distribution", False):
            options["on_distribution"] = self._on_rows
            options["distribution_stride"] = int(job.distribution_stride)
        return options

    def _on_rows(self, start: int, probs: np.ndarray) -> None:
        """The model's hook (this worker's thread): keep the rows, binned for the view, until the next emit."""
        from studio.engine.models.distribution import bin_classes

        if not self._rows:
            self._rows_start = int(start)
        self._rows.append(bin_classes(probs))

    def _emit_rows(self) -> None:
        if self._rows:
            rows = np.concatenate(self._rows)
            self._rows = []
            self.distribution.emit(self._rows_start, rows)

    def work(self) -> None:
        from studio.engine.models.base import GenerateRequest

        job = self.job
        model = job.model
        made = 0
        try:
            mel = None
            if job.source is not None:
                if not model.conditioned:
                    raise ValueError(
                        f"model '{model.name}' is unconditional: it cannot vocode audio; choose mode 'free'"
                    )
                mel = mel_for(model, job.source, job.source_rate)
            elif model.conditioned:
                raise ValueError(
                    f"model '{model.name}' is mel-conditioned: open a file or record a take and vocode it"
                )
            settings = {**job.generation_settings(), "options": self._options(job)}
            request = GenerateRequest(mel=mel, num_samples=job.num_samples, cancel=self.token, **settings)
            total = model.resolve_length(request)
            self.started_generation.emit(total, model.sample_rate)
            pending: list[np.ndarray] = []
            start = last_emit = time.perf_counter()
            for block in model.stream(request):
                if self.feeder is not None:
                    self.feeder.push(block)
                pending.append(block)
                made += block.shape[0]
                now = time.perf_counter()
                if now - last_emit >= 1.0 / EMIT_HZ:
                    self._emit_rows()
                    self.blocks.emit(np.concatenate(pending))
                    pending = []
                    self.progress.emit(made, total, now - start)
                    last_emit = now
                if self.token.cancelled:
                    break
            if self.cancel_requested_at is not None:
                self.cancel_latency_s = time.perf_counter() - self.cancel_requested_at
            self._emit_rows()
            if pending:
                self.blocks.emit(np.concatenate(pending))
            self.progress.emit(made, total, time.perf_counter() - start)
        finally:
            if self.feeder is not None:
                self.feeder.finish()
            self.finished_generation.emit(self.token.cancelled, made)
