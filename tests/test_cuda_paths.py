"""The fast paths on a GPU compute what the plain computation computes on the same GPU.

Skipped where torch sees no CUDA device (this project's CI machine); ``scripts/gpu-session`` runs this
file first on a lent GPU, before it benchmarks anything. TF32 is switched off inside each test, so
the tolerances are float32 ones (cuDNN's TF32 convolutions would differ by ~1e-3 relative).
Covered: WaveNet's cached incremental step (batch 1 and 4) against the full network; WaveRNN's
composed steps (mu-law and LPC) against the same steps on the CPU; WaveRNN folded generation with the
CUDA default folds; WaveGlow's chunked stream (CUDA default chunks) against one whole ``infer`` from
the same latent, and its float16 stream against float32.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from support import tiny_waveglow

from studio.engine.audio.features import FeatureProfile
from studio.engine.models import waveglow as waveglow_module
from studio.engine.models import wavernn as wavernn_module
from studio.engine.models.base import GenerateRequest
from studio.engine.models.wavenet import WaveNet, WaveNetConfig
from studio.engine.models.wavernn import WaveRNN, WaveRNNConfig

DEVICE = os.environ.get("STUDIO_TEST_GPU_DEVICE", "cuda")
"""The device under test; ``STUDIO_TEST_GPU_DEVICE=cpu`` dry-runs this file's logic on a machine without one."""
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA device (a lent GPU session)"
)

RNN_PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)


@pytest.fixture(autouse=True)
def float32_products():
    """No TF32 in matmuls and convolutions while a test runs (restored afterwards)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def perturbed(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Every weight nudged (random biases too), so that every gate and bias matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def test_wavenet_cached_steps_equal_the_full_network_on_the_gpu():
    torch.manual_seed(3)
    cfg = WaveNetConfig(kernel_size=3, layers=6, dilation_cycle=3, residual_channels=16, gate_channels=24,
                        skip_channels=16, n_mels=0)
    model = perturbed(WaveNet(cfg, RNN_PROFILE), 0.1, 4).to(DEVICE)
    for batch in (1, 4):
        x = torch.randint(0, 256, (batch, 80), generator=torch.Generator().manual_seed(batch)).to(DEVICE)
        with torch.no_grad():
            full = model(x, None, None)
        assert full.device.type == torch.device(DEVICE).type and full.abs().max() > 0.05
        torch.testing.assert_close(model.incremental_logits(x), full, atol=1e-4, rtol=1e-4)


def rnn(lpc_order: int) -> WaveRNN:
    torch.manual_seed(7)
    cfg = WaveRNNConfig(mode="mulaw", bits=8, rnn_dims=32, fc_dims=24, n_mels=8, upsample_scales=(4, 4),
                        res_blocks=1, compute_dims=16, res_out_dims=16, pad=1, lpc_order=lpc_order)
    return perturbed(WaveRNN(cfg, RNN_PROFILE), 0.15, 8)


def forced_logits(model: WaveRNN, cond: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """Step B streams with the given classes [B, T] on the model's device; logits [T, B, K] on the CPU."""
    b, n, _ = cond.shape
    out = []

    def choose(logits, t, part):
        out.append(logits.float().cpu())
        return forced[:, t].to(logits.device)

    # an LPC stepper writes the signal it makes where the others write classes
    classes = torch.zeros(b, n, dtype=torch.float32 if model.lpc_order else torch.long, device=cond.device)
    with torch.inference_mode():
        list(model.stepper().run(cond, choose, classes, model.start_class, yield_every=n))
    return torch.stack(out)


@pytest.mark.parametrize("lpc_order", [0, 4])
def test_wavernn_steps_on_the_gpu_equal_the_same_steps_on_the_cpu(lpc_order):
    model = rnn(lpc_order)
    n, b = 40, 3
    mel = torch.randn(b, 8, 4, generator=torch.Generator().manual_seed(2)) - 2.0
    forced = torch.randint(0, model.config.classes, (b, n), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cond = model.conditioning(mel, n, batch=b)
    on_cpu = forced_logits(model, cond, forced)
    model.__dict__.pop("_stepper_cache", None)
    model.to(DEVICE)
    with torch.inference_mode():
        cond_gpu = model.conditioning(mel.to(DEVICE), n, batch=b)
    on_gpu = forced_logits(model, cond_gpu, forced)
    assert on_cpu.abs().max() > 0.05
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-4, rtol=1e-4)


def test_wavernn_folded_generation_with_the_cuda_default_folds_streams_the_requested_length():
    model = rnn(0).to(DEVICE)
    hop = RNN_PROFILE.hop_length
    frames = 400  # 6400 samples: at the CUDA default the folds are as short as MIN_FOLD_FRAMES allows
    mel = (torch.randn(8, frames, generator=torch.Generator().manual_seed(3)) - 2.0).numpy()
    request = GenerateRequest(mel=mel, seed=5, device=DEVICE, options={"folded": True})
    length, _, _ = model._fold_options(request.options, frames * hop, torch.device(DEVICE).type)
    if DEVICE.startswith("cuda"):
        assert length == wavernn_module.MIN_FOLD_FRAMES * hop  # many folds: the CUDA default aims for 256
    audio = model.generate(request)
    assert audio.shape == (frames * hop,) and np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_waveglow_stream_with_the_cuda_default_chunks_equals_one_whole_infer_and_fp16_is_close():
    config = dataclasses.replace(tiny_waveglow.CONFIG, wn_layers=3)
    model = tiny_waveglow.live_waveglow(3, config, tiny_waveglow.PROFILE, end_std=0.2).to(DEVICE)
    profile = tiny_waveglow.PROFILE
    frames = 1100  # more than one CUDA default chunk (1024 frames)
    mel = torch.randn(1, 8, frames, generator=torch.Generator().manual_seed(1)) - 4.0
    overlap = model.overlap_frames
    assert waveglow_module.default_chunk_frames(overlap, "cuda") < frames  # the stream crosses a chunk there
    generator = torch.Generator(device=DEVICE).manual_seed(9)
    z = torch.randn((1, config.n_group, frames * profile.hop_length // config.n_group), generator=generator,
                    device=DEVICE) * 0.6
    want = model.infer(mel.to(DEVICE), z=z)[0].clamp(-1, 1).cpu().numpy()
    request = GenerateRequest(mel=mel[0].numpy(), seed=9, sigma=0.6, device=DEVICE)
    got = np.concatenate(list(model.stream(request)))
    assert got.shape == want.shape and np.abs(want).max() > 0.05
    assert np.abs(got - want).max() < 1e-4
    half = np.concatenate(list(model.stream(dataclasses.replace(request, options={"fp16": True}))))
    assert np.abs(half - got).max() < 0.02 * np.abs(got).max()
