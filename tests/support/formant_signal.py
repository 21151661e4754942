"""A mel the LPC tests share: a two-formant all-pole process with a moving level, so the prediction
from the mel has a real envelope to find and the coefficients change from frame to frame."""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import lfilter

from studio.engine.audio.features import FeatureProfile, MelFrontEnd


def formant_audio(samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` of the process: float32 [samples]."""
    rng = np.random.default_rng(seed)
    x = lfilter([1.0], [1.0, -1.3, 0.8], rng.standard_normal(samples)) * 0.05
    x *= 0.5 + 0.5 * np.sin(np.linspace(0, 3 * np.pi, samples)) ** 2
    return x.astype(np.float32)


def formant_mel(profile: FeatureProfile, frames: int, seed: int = 0) -> torch.Tensor:
    """``profile``'s mel of ``frames * hop`` samples of the process: float32 ``[1, n_mels, frames]``."""
    x = formant_audio(frames * profile.hop_length, seed)
    return MelFrontEnd(profile)(torch.from_numpy(x)[None])
