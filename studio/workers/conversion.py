"""Voice conversion off the GUI thread: converting a take, building a voice, starting/stopping live mode.

Threads: each ``work()`` runs on its worker's QThread and only emits signals. ``cancel()`` may be called
from any thread (it sets a flag the engine polls between stages / files). The live converter itself
runs on its own engine threads (PortAudio callbacks + a converter thread); the GUI only polls its
``stats()`` snapshot from the 30 Hz timer, and starts/stops it through ``LiveStartWorker`` /
``LiveStopWorker`` because opening devices and joining threads can take a moment.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from studio.workers.base import Worker

log = logging.getLogger(__name__)


@dataclass
class ConversionJob:
    """What to convert: mono float32 ``audio`` [T] at ``sample_rate`` Hz.

    transform: a ``VoiceTransform`` (pitch, formants, whisper); voice: the name or path of a target
    voice ("" = the speaker's own voice); render: "world" or a mel vocoder's name
    (``convert.render.renderer_for``); speaker: the voice of whoever speaks in ``audio`` ("" =
    measured on it). Voices and vocoder are loaded on the worker thread.
    """

    audio: np.ndarray
    sample_rate: int
    transform: Any
    voice: str = ""
    render: str = "world"
    speaker: str = ""


def make_target(transform: Any, voice: str = "", speaker: str = "") -> Any:
    """A ``ConversionTarget`` for ``transform``, the named target voice and the named speaker's voice as
    its source (each loaded from disk, "" = none; VoiceError if unknown). The speaker only matters
    when converting to a voice."""
    from studio.engine.convert import ConversionTarget, find_voice

    target = find_voice(voice) if voice else None
    source = find_voice(speaker) if speaker and target is not None else None
    return ConversionTarget(transform=transform, voice=target, source=source)


class ConversionWorker(Worker):
    """Runs ``convert_audio`` once.

    Signals: ``converted(ConversionResult)`` on success; ``cancelled()`` when cancel() stopped it;
    ``failed`` (from Worker) on errors; ``done`` last.
    """

    converted = Signal(object)
    cancelled = Signal()

    def __init__(self, job: ConversionJob) -> None:
        super().__init__()
        self.job = job
        self._cancel = threading.Event()
        self._render_cancel: Any = None  # the vocoder's CancelToken while one renders
        self.seconds = 0.0
        self.target_description = ""

    def cancel(self) -> None:
        self._cancel.set()
        token = self._render_cancel
        if token is not None:
            token.cancel()

    def work(self) -> None:
        from studio.engine.convert import convert_audio, renderer_for
        from studio.engine.convert.pipeline import ConversionCancelled
        from studio.engine.models.base import CancelToken

        job = self.job
        start = time.perf_counter()
        target = make_target(job.transform, job.voice, job.speaker)
        token = CancelToken()  # a vocoder stops mid-render when cancel() is called (WORLD between stages)
        self._render_cancel = token
        if self._cancel.is_set():
            token.cancel()
        renderer = renderer_for(job.render, cancel=token)
        self.target_description = target.describe() + ("" if renderer.name == "world" else f", {renderer.name}")
        try:
            result = convert_audio(job.audio, job.sample_rate, target, renderer=renderer, cancel=self._cancel.is_set)
        except ConversionCancelled:
            self.cancelled.emit()
            return
        self.seconds = time.perf_counter() - start
        if self._cancel.is_set():
            self.cancelled.emit()
            return
        self.converted.emit(result)


class VoiceBuildWorker(Worker):
    """Builds a voice from one speaker's recordings and saves it in ``folder`` (the user voices folder).

    Signals: ``progress(files_done, files_total)``; ``built(Voice)`` after saving; ``failed``; ``done``.
    """

    progress = Signal(int, int)
    built = Signal(object)

    def __init__(self, name: str, files: list[str], folder: Path | None = None) -> None:
        super().__init__()
        self.name = name
        self.files = list(files)
        self.folder = folder
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def work(self) -> None:
        from studio.engine.convert import build_voice, save_voice, user_voices_dir

        voice = build_voice(
            self.name, self.files, description="built in the studio", progress=self.progress.emit, cancel=self._cancel.is_set
        )
        folder = self.folder or user_voices_dir()
        save_voice(voice, Path(folder) / self.name)
        log.info("built voice %s from %d files: %s", self.name, len(self.files), voice.summary())
        self.built.emit(voice)


class LiveStartWorker(Worker):
    """Loads the target voice (if any), opens the devices and starts a ``LiveConverter``.

    ``settings`` is a ``LiveSettings`` whose target is replaced by ``make_target(transform, voice, speaker)``.
    Emits ``started(LiveConverter)``.
    """

    started = Signal(object)

    def __init__(self, settings: Any, transform: Any, voice: str = "", speaker: str = "") -> None:
        super().__init__()
        self.settings = settings
        self.transform = transform
        self.voice = voice
        self.speaker = speaker

    def work(self) -> None:
        from studio.engine.convert.live import LiveConverter

        self.settings.target = make_target(self.transform, self.voice, self.speaker)
        converter = LiveConverter(self.settings)
        converter.start()
        self.started.emit(converter)


class LiveStopWorker(Worker):
    """Stops a running ``LiveConverter`` (closes streams, joins its thread).

    Emits ``stopped(LiveStats, audio, rate)``: the final stats and, when ``keep_s`` > 0, the last
    ``keep_s`` seconds of converted audio (float32 [T] at the device rate; empty otherwise).
    """

    stopped = Signal(object, object, int)

    def __init__(self, converter: Any, keep_s: float = 0.0) -> None:
        super().__init__()
        self.converter = converter
        self.keep_s = keep_s

    def work(self) -> None:
        self.converter.stop()
        stats = self.converter.stats()
        audio = np.zeros(0, np.float32)
        if self.keep_s > 0 and self.converter.rate:
            audio = np.asarray(self.converter.recent_output(min(self.keep_s, stats.seconds)), np.float32).copy()
        self.stopped.emit(stats, audio, int(self.converter.rate))
