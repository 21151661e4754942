"""Renderers: WORLD tracks → audio. The DSP renderer works today; a neural vocoder plugs in.

``Renderer`` is the one interface the pipeline and the live converter use:
``render(features) -> float32 [features.num_samples]`` at ``features.sample_rate``.

- :class:`WorldRenderer`: WORLD's own synthesis (``pyworld.synthesize``): no model, deterministic.
- :class:`VocoderRenderer`: any studio ``WaveformModel`` that is conditioned on mel frames renders
  the converted speech: the tracks are voiced by WORLD, turned into the model's mel (its own
  ``FeatureProfile``: rate, hop, bands) and handed to ``model.stream`` — the same path
  ``studio vocode`` takes, so a vocoder trained for the studio improves conversion without changes
  here. Offline only (the live converter's time budget fits WORLD, not an autoregressive model on
  two cores).

``renderer_for(name)`` picks one by name: ``"world"`` (or nothing), else a model of the catalogue
(``studio models``) or a checkpoint path — what ``studio convert --render`` and the window's
"render" choice pass.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from studio.engine.convert.world import WorldFeatures, synthesize


class Renderer(Protocol):
    name: str

    def render(self, features: WorldFeatures) -> np.ndarray:
        """float32 [features.num_samples] at features.sample_rate. Runs on the calling (worker) thread."""


class WorldRenderer:
    """WORLD synthesis: pulses and noise shaped by the envelope (see ``world.synthesize``)."""

    name = "world"

    def render(self, features: WorldFeatures) -> np.ndarray:
        return synthesize(features)


class VocoderRenderer:
    """Render through a mel-conditioned studio model (``model.card().conditioning == "mel"``).

    ``request_options``: extra ``GenerateRequest`` fields (seed, temperature, sigma, device, cancel).
    ValueError when the model is not conditioned on mels.
    """

    name = "vocoder"

    def __init__(self, model: Any, **request_options: Any) -> None:
        if not getattr(model, "conditioned", False):
            raise ValueError(f"model {getattr(model, 'name', model)!r} is not mel-conditioned; it cannot render converted speech")
        self.model = model
        self.request_options = request_options
        self.name = f"vocoder:{getattr(model, 'name', type(model).__name__)}"

    def render(self, features: WorldFeatures) -> np.ndarray:
        from studio.engine.audio.features import compute_mel
        from studio.engine.audio.resample import resample
        from studio.engine.models.base import GenerateRequest

        profile = self.model.profile
        voiced = synthesize(features)
        at_model_rate = resample(voiced, features.sample_rate, profile.sample_rate)
        mel = compute_mel(at_model_rate, profile)
        request = GenerateRequest(mel=mel, **self.request_options)
        blocks = [np.asarray(b, dtype=np.float32).reshape(-1) for b in self.model.stream(request)]
        audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        back = resample(audio, profile.sample_rate, features.sample_rate)
        out = np.zeros(features.num_samples, dtype=np.float32)
        n = min(out.shape[0], back.shape[0])
        out[:n] = back[:n]
        return out


WORLD = "world"
"""The name of the DSP renderer in ``renderer_for`` (and in the CLI and the window)."""


def renderer_for(name: str | None, **request_options: Any) -> Renderer:
    """``WorldRenderer`` for ``"world"``, ``""`` or None; else a ``VocoderRenderer`` on the model called
    ``name`` in the catalogue (or the checkpoint at that path), loaded on the calling thread, with
    ``request_options`` for its ``GenerateRequest``. Raises ``ModelNotFoundError`` / ``CheckpointError``
    (unknown or broken model) or ValueError (a model that is not mel-conditioned, e.g. free music)."""
    if not name or name == WORLD:
        return WorldRenderer()
    from studio.engine.catalog import find_model
    from studio.engine.checkpoints import load_model

    entry = find_model(name)
    return VocoderRenderer(load_model(entry.path), **request_options)
