"""The settings of a generation apart from what it is conditioned on (torch-free, so the studio's
generation job can share them without importing torch on the GUI thread)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PROJECTION_OPTION = "spectral_projection"
"""``options`` key that overrides a model's ``spectral_projection`` for one generation (None = off,
0..``audio.projection.MAX_ITERATIONS`` = that many passes after the first)."""
DEFAULT_PROJECTION = 64
"""Passes after the first when a projection is asked of a model that has no setting of its own (what the
bundled speech vocoders ship with; docs/models.md)."""


@dataclass(kw_only=True)
class GenerationSettings:
    """How to generate, apart from what to condition on: shared by ``GenerateRequest`` and the studio's
    generation job (``studio.workers.generation.GenerationJob``), which carries them to its request.
    Keyword-only fields.

    seed: the same seed and request give the same samples.
    temperature: softmax temperature of autoregressive families (1.0 = the model's distribution, at the
        model's own ``sampling_temperature`` when its config has one).
    sigma: standard deviation of the flow families' latent (WaveGlow uses 0.6 by default).
    denoise: strength of the WaveGlow denoiser (0 = off).
    device: "cpu", "cuda" or "cuda:N".
    block_size: about how many samples each yielded block holds (autoregressive families).
    options: family-specific switches (e.g. {"folded": True} for WaveRNN, {"fp16": True}), and
        ``PROJECTION_OPTION`` for any mel-conditioned model. Families with
        ``supports_distribution`` also take ``on_distribution`` (a callback that receives the predicted
        distribution over classes while generating) and ``distribution_stride``; see
        ``studio.engine.models.distribution``.
    """

    seed: int = 0
    temperature: float = 1.0
    sigma: float = 0.6
    denoise: float = 0.0
    device: str = "cpu"
    block_size: int = 2048
    options: dict[str, Any] = field(default_factory=dict)

    def generation_settings(self) -> dict[str, Any]:
        """These settings as keyword arguments (the same objects, not copies), e.g. for a ``GenerateRequest``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(GenerationSettings)}
