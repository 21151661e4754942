"""WaveGlow family: invertibility, log-determinants, streaming, seeding, cancel, training, denoiser."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch
from support import tiny_waveglow
from support.cancel_timing import cancel_mid_run
from support.crop_training import adam_steps_on_batch

from studio.engine.audio.features import FeatureProfile, MelFrontEnd
from studio.engine.models.base import CancelToken, GenerateRequest, build_model, get_family
from studio.engine.models.waveglow import WaveGlow, WaveGlowConfig
from studio.engine.models.waveglow_denoiser import WaveGlowDenoiser
from studio.engine.models.waveglow_flow import WN, Invertible1x1Conv

PROFILE = tiny_waveglow.PROFILE
TINY = tiny_waveglow.CONFIG
tiny_model = tiny_waveglow.live_waveglow  # (seed=0, config=TINY, profile=PROFILE): couplings not the identity


def random_mel(frames: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, PROFILE.n_mels, frames, generator=g)


# -- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_flows": 0}, "n_flows must be a positive integer, got 0"),
        ({"wn_kernel_size": 4}, "wn_kernel_size must be an odd positive integer, got 4"),
        ({"n_group": 8, "n_early_size": 3}, "flow 4 would see 5 channels"),
        ({"n_group": 4, "n_early_size": 2, "n_early_every": 4}, "flow 8 would see 0 channels"),
        ({"upsample_align": "left"}, "upsample_align must be one of"),
        ({"sigma": 0.0}, "sigma must be > 0, got 0.0"),
    ],
)
def test_config_rejects_bad_values_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        WaveGlowConfig(**changes)


def test_model_rejects_a_profile_that_does_not_fit():
    with pytest.raises(ValueError, match="n_mels=80 but feature profile 'tiny-8k' has n_mels=8"):
        WaveGlow(WaveGlowConfig(), PROFILE)
    odd_hop = FeatureProfile(**{**PROFILE.to_dict(), "hop_length": 60})
    with pytest.raises(ValueError, match="hop_length=60 .* multiple of n_group=8"):
        WaveGlow(TINY, odd_hop)


def test_family_is_registered_and_builds_from_a_dict():
    assert get_family("waveglow").model_class is WaveGlow
    model = build_model("waveglow", {"n_mels": 8, "n_flows": 2, "wn_layers": 1, "wn_channels": 8}, PROFILE)
    card = model.card()
    assert card.family == "waveglow" and card.conditioning == "mel"
    assert card.config["n_flows"] == 2 and card.parameters == model.parameter_count()


# -- the flow ---------------------------------------------------------------------------------------


def test_invertible_conv_starts_orthogonal_with_det_plus_one_and_logdet_is_exact():
    torch.manual_seed(3)
    conv = Invertible1x1Conv(6).double()
    w = conv.matrix.detach()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6)
    assert torch.det(w).item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():  # a general matrix with negative determinant: log|det| must still be right
        conv.conv.weight.add_(0.3 * torch.randn_like(conv.conv.weight))
        conv.conv.weight[0].neg_()
    x = torch.randn(1, 6, 5, dtype=torch.float64)
    _, log_det = conv(x)
    jac = torch.autograd.functional.jacobian(lambda v: conv(v.view(1, 6, 5))[0].reshape(-1), x.reshape(-1))
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-9)
    assert torch.allclose(conv.inverse(conv(x)[0]), x, atol=1e-10)


def test_log_det_of_the_whole_flow_matches_the_autograd_jacobian():
    model = tiny_model(seed=4).double()
    mel = random_mel(1).double()
    audio = 0.3 * torch.randn(1, PROFILE.hop_length, dtype=torch.float64)
    z, log_s_list, log_det_w_list = model(audio, mel)
    claimed = sum(ls.sum() for ls in log_s_list) + sum(log_det_w_list)
    jac = torch.autograd.functional.jacobian(
        lambda a: model(a.view(1, -1), mel)[0].reshape(-1), audio.reshape(-1), vectorize=True
    )
    sign, true_log_det = torch.linalg.slogdet(jac)
    assert sign.item() != 0
    assert abs(claimed.item()) > 0.1  # the couplings really scale
    assert claimed.item() == pytest.approx(true_log_det.item(), abs=1e-8)


def test_inverse_of_forward_reproduces_audio_with_and_without_weight_norm():
    model = tiny_model(seed=5)
    mel = random_mel(12, batch=2)
    audio = 0.5 * torch.randn(2, 12 * PROFILE.hop_length)
    assert model.weight_norm_active
    with torch.no_grad():
        z, _, _ = model(audio, mel)
        assert (model.infer(mel, z=z) - audio).abs().max().item() < 1e-4
        model.remove_weight_norm()
        assert not model.weight_norm_active
        z_folded, _, _ = model(audio, mel)
        assert (z_folded - z).abs().max().item() < 1e-5
        assert (model.infer(mel, z=z_folded) - audio).abs().max().item() < 1e-4
        assert model.remove_weight_norm() is model  # idempotent


def test_state_dicts_load_across_weight_norm_layouts():
    trained = tiny_model(seed=6)
    mel = random_mel(4)
    reference = trained.infer(mel, z=torch.ones(1, 8, 32) * 0.1)
    normed_state = trained.state_dict()
    legacy_state = {
        k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
        for k, v in normed_state.items()
    }  # fmt: skip
    folded = tiny_model(seed=99).remove_weight_norm()
    folded.load_state_dict(normed_state)
    assert torch.allclose(folded.infer(mel, z=torch.ones(1, 8, 32) * 0.1), reference, atol=1e-5)
    for state in (folded.state_dict(), legacy_state):
        fresh = tiny_model(seed=98)
        fresh.load_state_dict(state)
        assert fresh.weight_norm_active
        assert torch.allclose(fresh.infer(mel, z=torch.ones(1, 8, 32) * 0.1), reference, atol=1e-5)


def test_receptive_field_bounds_how_far_a_latent_change_travels():
    model = tiny_model(seed=7)
    mel = random_mel(8)
    z = 0.6 * torch.randn(1, 8, 64)
    bumped = z.clone()
    step = 32
    bumped[:, :, step] += 1.0
    diff = (model.infer(mel, z=bumped) - model.infer(mel, z=z))[0].abs()
    changed = torch.nonzero(diff > 1e-6).flatten()
    half = TINY.n_flows * WN.half_span(TINY.wn_layers, TINY.wn_kernel_size) * TINY.n_group
    centre = step * TINY.n_group
    assert changed.min().item() >= centre - half
    assert changed.max().item() < centre + TINY.n_group + half
    assert changed.max().item() - changed.min().item() > 4 * TINY.n_group  # the couplings spread it
    assert model.receptive_field == 2 * half + TINY.n_group


def test_inverse_under_reduced_precision_autocast_tracks_float32():
    """The mixed-dtype path that fp16 on CUDA takes, exercised with CPU bfloat16 autocast."""
    model = tiny_model(seed=14).remove_weight_norm()
    mel = random_mel(10)
    z = 0.6 * torch.randn(1, 8, 80)
    reference = model.infer(mel, z=z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = model.infer(mel, z=z)
    assert reduced.dtype in (torch.bfloat16, torch.float32) and torch.isfinite(reduced).all()
    error = (reduced.float() - reference).abs().max().item()
    assert 0 < error < 0.05 * reference.abs().max().item()


# -- generation through the model interface ---------------------------------------------------------


def _generate(model: WaveGlow, mel: np.ndarray, **kwargs) -> np.ndarray:
    return model.generate(GenerateRequest(mel=mel, **kwargs))


def test_chunked_streaming_equals_one_whole_pass():
    model = tiny_model(seed=8)
    mel = random_mel(41)[0].numpy()
    whole = _generate(model, mel, seed=3, sigma=0.1, options={"chunk_frames": 1000})
    blocks = list(model.stream(GenerateRequest(mel=mel, seed=3, sigma=0.1, options={"chunk_frames": 7})))
    assert len(blocks) == 6 and all(len(b) == 7 * PROFILE.hop_length for b in blocks[:-1])
    chunked = np.concatenate(blocks)
    assert chunked.shape == whole.shape == (41 * PROFILE.hop_length,)
    assert np.abs(chunked - whole).max() < 1e-6
    # without the context the seams differ: the overlap is what makes them equal
    no_context = _generate(model, mel, seed=3, sigma=0.1, options={"chunk_frames": 7, "overlap_frames": 0})
    assert np.abs(no_context - whole).max() > 1e-3
    # the same holds with the denoiser on
    whole_dn = _generate(model, mel, seed=3, sigma=0.1, denoise=0.5, options={"chunk_frames": 1000})
    chunked_dn = _generate(model, mel, seed=3, sigma=0.1, denoise=0.5, options={"chunk_frames": 7})
    assert np.abs(chunked_dn - whole_dn).max() < 1e-6
    assert np.abs(whole_dn - whole).max() > 1e-4


def test_same_seed_same_audio_and_another_seed_other_audio():
    model = tiny_model(seed=9)
    mel = random_mel(20)[0].numpy()
    a = _generate(model, mel, seed=11)
    b = _generate(model, mel, seed=11)
    c = _generate(model, mel, seed=12)
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_stream_gives_float32_in_range_of_the_requested_length():
    model = tiny_model(seed=10)
    frames = 30
    mel = (3.0 * random_mel(frames))[0].numpy()  # loud enough that some samples need clamping
    wanted = frames * PROFILE.hop_length - 37
    seen = []
    request = GenerateRequest(mel=mel, num_samples=wanted, seed=1, sigma=2.0, options={"chunk_frames": 8},
                              progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    blocks = list(model.stream(request))
    audio = np.concatenate(blocks)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert audio.shape == (wanted,)
    assert audio.min() >= -1.0 and audio.max() <= 1.0 and np.abs(audio).max() > 0.1
    assert seen[-1] == (wanted, wanted) and len(seen) == len(blocks) == 4
    one_frame = model.generate(GenerateRequest(mel=mel[:, :1], denoise=0.2))
    assert one_frame.shape == (PROFILE.hop_length,) and np.isfinite(one_frame).all()
    with pytest.raises(ValueError, match=r"mel must be \[n_mels=8, frames\]"):
        list(model.stream(GenerateRequest(mel=np.zeros((80, 4), np.float32))))


def test_cancel_stops_between_segments():
    model = tiny_model(seed=11)
    mel = random_mel(40)[0].numpy()
    token = CancelToken()
    blocks = []
    for block in model.stream(GenerateRequest(mel=mel, cancel=token, options={"chunk_frames": 5})):
        blocks.append(block)
        token.cancel()
    assert len(blocks) == 1 and blocks[0].shape == (5 * PROFILE.hop_length,)
    # a request cancelled before it starts makes nothing
    assert model.generate(GenerateRequest(mel=mel, cancel=token)).shape == (0,)


def test_cancel_lands_within_200_ms_even_mid_chunk():
    """A chunk of this size takes seconds; the cancel is polled between coupling layers, not chunks."""
    config = WaveGlowConfig(n_mels=8, n_flows=12, n_group=8, n_early_every=4, n_early_size=2,
                            wn_layers=8, wn_channels=128, wn_kernel_size=3, upsample_window=128)  # fmt: skip
    model = tiny_model(seed=3, config=config)
    mel = random_mel(600)[0].numpy()  # 38400 samples in ONE chunk: 96 coupling layers over 4800 steps
    token = CancelToken()
    request = GenerateRequest(mel=mel, cancel=token, options={"chunk_frames": 600})
    got, latency = cancel_mid_run(lambda: list(model.stream(request)), token, after_s=0.5)
    assert latency < 0.2, f"stream ended {latency * 1000:.0f} ms after cancel"
    assert got == []  # cancelled inside the only chunk: nothing half-made is yielded


# -- training ---------------------------------------------------------------------------------------


def spoken_audio(sample_rate: int) -> np.ndarray:
    """A short English phrase from espeak-ng, float32 mono, normalised to a 0.5 peak."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en", "-s", "150", "--stdout", "waveform studio says hello"],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip
    import io

    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    assert rate == sample_rate, f"espeak-ng spoke at {rate} Hz"
    return 0.5 * audio / np.abs(audio).max()


@pytest.mark.slow
def test_a_few_training_steps_on_speech_lower_the_nll():
    profile = FeatureProfile(**{**PROFILE.to_dict(), "name": "tiny-22k", "sample_rate": 22050, "fmax": 11025.0})
    speech = torch.from_numpy(spoken_audio(22050))
    segment = 32 * profile.hop_length
    voiced = torch.nonzero(speech.abs() > 0.05).flatten()
    starts = torch.linspace(voiced[0].item(), voiced[-1].item() - segment, 4).long()
    audio = torch.stack([speech[s : s + segment] for s in starts])
    mel = MelFrontEnd(profile)(audio)
    # the best the model could do by only learning one scale: an i.i.d. Gaussian of the audio's std
    scale_only = 0.5 / TINY.sigma**2 + float(torch.log(audio.std() / TINY.sigma))
    torch.manual_seed(0)
    model = WaveGlow(TINY, profile).train()
    losses = adam_steps_on_batch(model, audio, mel, steps=30, lr=5e-3)
    assert np.isfinite(losses).all()
    final = float(np.mean(losses[-3:]))
    assert final < losses[0] - 1.0, losses
    assert final < scale_only - 0.1, (final, scale_only, losses)
    # the trained model still inverts exactly, and generation uses the updated 1×1 inverses
    model.eval()
    with torch.no_grad():
        z, _, _ = model(audio, mel)
        assert (model.infer(mel, z=z) - audio).abs().max().item() < 1e-4


# -- denoiser ---------------------------------------------------------------------------------------


def test_denoiser_removes_the_model_bias_and_keeps_other_sound():
    model = tiny_model(seed=12)
    denoiser = WaveGlowDenoiser(model)
    bias = denoiser.bias_audio
    assert bias.shape == (88 * PROFILE.hop_length,) and bias.abs().max() > 1e-3
    energy = float((bias**2).sum())
    assert float((denoiser(bias, 1.0) ** 2).sum()) < 0.05 * energy
    assert float((denoiser(bias, 0.5) ** 2).sum()) < 0.5 * energy
    t = torch.arange(8000) / 8000
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    assert float((denoiser(tone, 1.0) ** 2).sum()) > 0.9 * float((tone**2).sum())
    for signal in (bias, tone):
        assert (denoiser(signal, 0.0) - signal).abs().max().item() < 1e-5
    short = tone[:50]  # shorter than half the FFT: still works, same length back
    assert denoiser(short, 1.0).shape == (50,) and (denoiser(short, 0.0) - short).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="strength must be ≥ 0"):
        denoiser(tone, -0.1)
    silent = WaveGlowDenoiser(model, bias_mel="silence")  # ln(1e-5) everywhere instead of zeros
    assert not torch.allclose(silent.bias_spectrum, denoiser.bias_spectrum)
    with pytest.raises(ValueError, match="bias_mel must be 'zeros' or 'silence', got 'hum'"):
        WaveGlowDenoiser(model, bias_mel="hum")


def test_denoiser_follows_the_weights():
    model = tiny_model(seed=13)
    first = model.denoiser()
    assert model.denoiser() is first
    with torch.no_grad():
        model.WN[0].end.bias.add_(0.5)
    second = model.denoiser()
    assert second is not first
    assert not torch.allclose(first.bias_spectrum, second.bias_spectrum)
