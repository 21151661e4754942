"""Fast paths added for speed compute the same function as the plain modules they replace.

WaveGlow: ``FastWN`` (weight snapshots, 1×1 convolutions through oneDNN, per-layer conditioning) against
``WN.forward``; ``infer(fast=True)`` and ``stream`` against ``infer`` on the weight-normed modules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.audio.features import FeatureProfile
from studio.engine.models.base import GenerateRequest
from studio.engine.models.waveglow import WaveGlow, WaveGlowConfig
from studio.engine.models.waveglow_fast import FastWN, pointwise
from studio.engine.models.waveglow_flow import WN

PROFILE = FeatureProfile(
    name="tiny-8k", sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=8, fmin=0.0, fmax=4000.0
)
GLOW = WaveGlowConfig(
    n_mels=8, n_flows=4, n_group=8, n_early_every=2, n_early_size=2,
    wn_layers=3, wn_channels=16, wn_kernel_size=3, upsample_window=128,
)  # fmt: skip


def glow(seed: int) -> WaveGlow:
    torch.manual_seed(seed)
    model = WaveGlow(GLOW, PROFILE)
    with torch.no_grad():
        for wn in model.WN:  # the zero-initialised ends would make every coupling the identity
            wn.end.weight.normal_(0.0, 0.2)
            wn.end.bias.normal_(0.0, 0.1)
    return model.eval()


def mel(frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 8, frames, generator=torch.Generator().manual_seed(seed)) - 4.0


@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_equals_a_one_tap_convolution(threads):
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(2, 24, 300, generator=g), torch.randn(40, 24, 1, generator=g), torch.randn(40, generator=g)
        torch.testing.assert_close(pointwise(x, w, b), torch.nn.functional.conv1d(x, w, b), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(own)


@pytest.mark.parametrize("layers", [1, 4])
def test_fast_wn_equals_the_module_with_and_without_weight_norm(layers):
    torch.manual_seed(layers)
    wn = WN(n_in=3, n_cond=20, n_layers=layers, n_channels=12, kernel_size=3).eval()
    with torch.no_grad():
        wn.end.weight.normal_(0.0, 0.3)
        wn.end.bias.normal_(0.0, 0.3)
    x0, cond = torch.randn(2, 3, 77), torch.randn(2, 20, 77)
    with torch.inference_mode():
        want = wn(x0, cond)
        got = FastWN(wn)(x0, cond)
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    from studio.engine.models.waveglow_flow import fold_weight_norm

    fold_weight_norm(wn)
    with torch.inference_mode():
        torch.testing.assert_close(FastWN(wn)(x0, cond), want, rtol=1e-5, atol=1e-5)


def test_fast_infer_and_stream_equal_the_plain_weight_normed_infer():
    model = glow(seed=3)
    frames = 23
    m = mel(frames)
    z = torch.randn(1, GLOW.n_group, frames * PROFILE.hop_length // GLOW.n_group,
                    generator=torch.Generator().manual_seed(5)) * 0.6  # fmt: skip
    plain = model.infer(m, z=z)
    fast = model.infer(m, z=z, fast=True)
    assert plain.abs().max() > 0.05
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    # the stream (fast, chunked) gives what the plain whole pass gives from the same latent
    generator = torch.Generator().manual_seed(9)
    z_stream = torch.randn((1, GLOW.n_group, frames * PROFILE.hop_length // GLOW.n_group), generator=generator) * 0.6
    want = model.infer(m, z=z_stream)[0].clamp(-1, 1).numpy()
    got = np.concatenate(list(model.stream(GenerateRequest(mel=m[0].numpy(), seed=9, sigma=0.6,
                                                           options={"chunk_frames": 5}))))  # fmt: skip
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_fast_couplings_follow_weight_changes():
    model = glow(seed=4)
    m = mel(6)
    z = torch.randn(1, GLOW.n_group, 6 * PROFILE.hop_length // GLOW.n_group) * 0.6
    first = model.fast_couplings()
    assert model.fast_couplings() is first  # cached while nothing changes
    before = model.infer(m, z=z, fast=True)
    with torch.no_grad():
        model.WN[0].end.bias.add_(0.5)
    assert model.fast_couplings() is not first
    after = model.infer(m, z=z, fast=True)
    torch.testing.assert_close(after, model.infer(m, z=z), rtol=1e-4, atol=1e-5)
    assert (after - before).abs().max() > 1e-3
    model.remove_weight_norm()
    torch.testing.assert_close(model.infer(m, z=z, fast=True), after, rtol=1e-4, atol=1e-5)
