"""The tiny WaveGlow the WaveGlow tests and the fast-path tests build: an 8 kHz profile with 8 mels,
a 4-flow config of a few thousand parameters, and a model whose couplings are not the identity."""

from __future__ import annotations

import torch

from studio.engine.audio.features import FeatureProfile
from studio.engine.models.waveglow import WaveGlow, WaveGlowConfig

PROFILE = FeatureProfile(
    name="tiny-8k", sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=8, fmin=0.0, fmax=4000.0
)
CONFIG = WaveGlowConfig(
    n_mels=8, n_flows=4, n_group=8, n_early_every=2, n_early_size=2,
    wn_layers=2, wn_channels=16, wn_kernel_size=3, upsample_window=128,
)  # fmt: skip


def live_waveglow(
    seed: int = 0, config: WaveGlowConfig = CONFIG, profile: FeatureProfile = PROFILE, *, end_std: float = 0.1
) -> WaveGlow:
    """A WaveGlow in eval mode, made after ``torch.manual_seed(seed)``. Its couplings' zero-initialised
    ends (which would make every coupling the identity) get random weights, std ``end_std``, and
    random biases, std 0.1."""
    torch.manual_seed(seed)
    model = WaveGlow(config, profile)
    with torch.no_grad():
        for wn in model.WN:
            wn.end.weight.normal_(0.0, end_std)
            wn.end.bias.normal_(0.0, 0.1)
    return model.eval()
