"""Loading a model off the GUI thread: read the checkpoint, move it to the device, warm it up.

Threads: ``ModelLoadWorker.work`` runs on its QThread; it only emits signals.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from studio.workers.base import Worker

log = logging.getLogger(__name__)

WARMUP_SAMPLES = 256


@dataclass
class LoadedModel:
    """A model ready to generate: the module, where it came from, and how long loading took (s)."""

    model: Any  # studio.engine.models.base.WaveformModel
    path: str
    device: str
    load_s: float
    warmup_s: float


def available_devices() -> list[str]:
    """"cpu" and, when torch sees GPUs, "cuda:N" for each."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return devices


def warm_up(model: Any, device: str) -> None:
    """Generate a few samples so the first real block does not pay for lazy initialisation."""
    from studio.engine.models.base import GenerateRequest

    mel = None
    if model.conditioned:
        frames = max(2, -(-WARMUP_SAMPLES // model.profile.hop_length))
        mel = np.zeros((model.profile.n_mels, frames), np.float32)
    request = GenerateRequest(mel=mel, num_samples=WARMUP_SAMPLES, device=device, block_size=WARMUP_SAMPLES)
    for _ in model.stream(request):
        pass


class ModelLoadWorker(Worker):
    """Loads checkpoint ``path`` onto ``device`` and warms it up.

    Signals: ``progress(percent, stage)``; ``loaded(LoadedModel)`` on success (``failed`` otherwise).
    """

    progress = Signal(int, str)
    loaded = Signal(object)

    def __init__(self, path: str, device: str = "cpu") -> None:
        super().__init__()
        self.path = str(path)
        self.device = device

    def work(self) -> None:
        from studio.engine.checkpoints import load_model

        self.progress.emit(5, "reading checkpoint")
        t0 = time.perf_counter()
        model = load_model(self.path, device=self.device)
        load_s = time.perf_counter() - t0
        self.progress.emit(60, f"warming up on {self.device}")
        t1 = time.perf_counter()
        warm_up(model, self.device)
        warmup_s = time.perf_counter() - t1
        self.progress.emit(100, "ready")
        log.info("loaded %s on %s in %.2f s (warm-up %.2f s)", self.path, self.device, load_s, warmup_s)
        self.loaded.emit(LoadedModel(model, self.path, self.device, load_s, warmup_s))
