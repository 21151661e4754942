"""A live view into an autoregressive model's predicted distribution while it generates.

Request options (``GenerateRequest.options``), honoured by WaveNet and WaveRNN:

- ``"on_distribution"``: ``fn(start_sample: int, probs: np.ndarray) -> None``. Called on the generating
  thread, once per yielded block that holds at least one tapped sample, just *before* that block is
  yielded. ``probs`` is a fresh float32 array ``[n_rows, n_classes]`` (the callee may keep it): row
  ``i`` is the distribution the sample ``start_sample + i * stride`` was drawn from, i.e.
  ``softmax(logits / temperature)`` (temperature 0: a one-hot row at the argmax, which is what argmax
  sampling draws from). Tapped samples are the multiples of ``stride``, so ``start_sample`` is one too.
  An exception raised by ``fn`` ends the generation (it propagates out of ``stream``).
- ``"distribution_stride"``: tap every k-th sample (default ``DEFAULT_DISTRIBUTION_STRIDE``), which
  keeps the cost at one small softmax per ``k`` samples.

Which distribution: WaveNet and mu-law WaveRNN give their single softmax over ``2**bits`` mu-law
classes; dual-softmax WaveRNN gives its *coarse* softmax (256 classes: the upper byte of linear
16-bit PCM, not mu-law). Folded generation taps the first segment's stream only, for the samples that
segment alone decides (``WaveNet``: ``fold_length + warm-up``; ``WaveRNN``: ``fold_length + 1.5 *
fold_overlap``); later blocks come without rows.

Cost: without ``on_distribution`` nothing here is built and no softmax is computed (the families check
for ``None`` once per step at most). With it: one softmax over ``n_classes`` every ``stride`` samples,
from logits the step has anyway (the native WaveNet loop copies its logits out for the run).

Threads: a ``DistributionTap`` belongs to the generating thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

ON_DISTRIBUTION = "on_distribution"
DISTRIBUTION_STRIDE = "distribution_stride"
DEFAULT_DISTRIBUTION_STRIDE = 32
"""Samples between two tapped rows: ~690 rows a second at 22.05 kHz, far more than a view can show."""

DistributionCallback = Callable[[int, np.ndarray], None]
"""``fn(start_sample, probs [n_rows, n_classes] float32)``, see the module doc."""


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / temperature)`` over the last dimension, float32; temperature 0 -> one-hot argmax.

    logits: ``[C]`` or ``[n, C]`` (any float dtype, any device). Returns the same shape.
    """
    logits = logits.float()
    if temperature > 0.0:
        return torch.softmax(logits * (1.0 / temperature), dim=-1)
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()


def distribution_classes(model: Any) -> int:
    """Classes of the distribution that ``model`` reports (columns of ``probs``); 0 if it reports none."""
    if not getattr(model, "supports_distribution", False):
        return 0
    cfg = model.config
    if hasattr(cfg, "out_classes"):  # WaveNet
        return int(cfg.out_classes)
    return 256 if getattr(cfg, "mode", "mulaw") == "dual" else int(cfg.classes)  # WaveRNN


class DistributionTap:
    """Collects the tapped rows of one stream and hands them to the callback block by block.

    ``record(t, logits)`` / ``record_span(t0, logits)`` take logits of sample ``t`` (``[C]``) or of
    samples ``t0 .. t0+n-1`` (``[n, C]``) and keep the rows of tapped samples below ``limit``;
    ``flush(upto)`` calls the callback with the kept rows of samples ``< upto``.
    """

    def __init__(
        self,
        callback: DistributionCallback,
        stride: int = DEFAULT_DISTRIBUTION_STRIDE,
        temperature: float = 1.0,
        limit: int | None = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"options['{ON_DISTRIBUTION}'] must be callable as fn(start_sample, probs), got {callback!r}")
        stride = int(stride)
        if stride < 1:
            raise ValueError(f"options['{DISTRIBUTION_STRIDE}'] must be >= 1 (samples), got {stride}")
        self.callback = callback
        self.stride = stride
        self.temperature = float(temperature)
        self.limit = limit
        self._samples: list[int] = []
        self._rows: list[torch.Tensor] = []

    @classmethod
    def from_request(cls, request: Any, limit: int | None = None) -> DistributionTap | None:
        """The tap a request asks for, or None (the common case: then nothing else is done)."""
        options = request.options or {}
        callback = options.get(ON_DISTRIBUTION)
        if callback is None:
            return None
        stride = options.get(DISTRIBUTION_STRIDE, DEFAULT_DISTRIBUTION_STRIDE)
        return cls(callback, stride, request.temperature, limit)

    def wants(self, t: int) -> bool:
        """Whether sample ``t`` is tapped."""
        return t % self.stride == 0 and (self.limit is None or t < self.limit)

    def record(self, t: int, logits: torch.Tensor) -> None:
        """Keep the distribution of sample ``t`` from its logits ``[C]`` (if ``t`` is tapped)."""
        if self.wants(t):
            self._samples.append(t)
            self._rows.append(probabilities(logits, self.temperature))

    def record_span(self, t0: int, logits: torch.Tensor) -> None:
        """Keep the tapped rows among samples ``t0 .. t0+n-1`` from their logits ``[n, C]``."""
        stop = t0 + logits.shape[0]
        if self.limit is not None:
            stop = min(stop, self.limit)
        first = -(-t0 // self.stride) * self.stride
        if first >= stop:
            return
        picked = probabilities(logits[first - t0 : stop - t0 : self.stride], self.temperature)
        self._samples.extend(range(first, stop, self.stride))
        self._rows.extend(picked.unbind(0))

    def flush(self, upto: int) -> None:
        """Hand the kept rows of samples ``< upto`` to the callback (nothing when there are none)."""
        n = 0
        while n < len(self._samples) and self._samples[n] < upto:
            n += 1
        if not n:
            return
        start = self._samples[0]
        probs = torch.stack(self._rows[:n]).cpu().numpy().astype(np.float32, copy=False)
        del self._samples[:n], self._rows[:n]
        self.callback(start, np.ascontiguousarray(probs))


MAX_VIEW_BINS = 128
"""Most class bins a view needs (the heat map's rows): 512 or 65536 classes are summed down to this."""


def bin_classes(probs: np.ndarray, max_bins: int = MAX_VIEW_BINS) -> np.ndarray:
    """Sum neighbouring classes of ``probs [n, C]`` into at most ``max_bins`` bins -> float32 ``[n, bins]``.

    Bins are contiguous runs of classes (equal runs when ``max_bins`` divides ``C``; else their edges are
    spread evenly), so every row still sums to what it summed to. Rows with ``C <= max_bins`` come back
    unchanged (as float32).
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [rows, classes], got shape {probs.shape}")
    if max_bins < 1:
        raise ValueError(f"max_bins must be >= 1, got {max_bins}")
    classes = probs.shape[1]
    if classes <= max_bins:
        return probs
    if classes % max_bins == 0:
        return probs.reshape(probs.shape[0], max_bins, classes // max_bins).sum(axis=2, dtype=np.float32)
    edges = np.linspace(0, classes, max_bins + 1).astype(np.int64)[:-1]
    return np.add.reduceat(probs, edges, axis=1).astype(np.float32, copy=False)
