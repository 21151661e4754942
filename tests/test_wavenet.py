"""WaveNet family: config checks, causality, fast path == full network, sampling, cancel, training."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from support.cancel_timing import cancel_mid_run

from studio.engine.audio.features import FeatureProfile, MelFrontEnd
from studio.engine.models.base import CancelToken, GenerateRequest, build_model, get_family
from studio.engine.models.wavenet import WaveNet, WaveNetConfig, auto_upsample_scales
from studio.engine.models.wavenet_fold import join_segments

PROFILE = FeatureProfile(
    name="wavenet-test", sample_rate=16000, n_fft=256, hop_length=64, win_length=256, n_mels=8, fmin=0.0, fmax=8000.0
)

TINY = WaveNetConfig(
    kernel_size=2,
    layers=6,
    dilation_cycle=3,
    residual_channels=8,
    gate_channels=12,
    skip_channels=8,
    n_mels=8,
    cond_channels=6,
    upsample_scales=(4, 16),
    mel_context=1,
)


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    """Small tensors: one torch thread is many times faster than two on a loaded 2-core machine."""
    torch.set_num_threads(1)
    yield


def tiny(**changes) -> WaveNet:
    torch.manual_seed(1234)
    return WaveNet(dataclasses.replace(TINY, **changes), PROFILE).eval()


def random_mel(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((PROFILE.n_mels, frames)).astype(np.float32)


# -- config ----------------------------------------------------------------------------------------
def test_config_refuses_bad_values_and_names_them():
    with pytest.raises(ValueError, match=r"\(4, 4\) multiply to 16.*hop_length 64"):
        WaveNet(dataclasses.replace(TINY, upsample_scales=(4, 4)), PROFILE)
    with pytest.raises(ValueError, match="n_mels=5"):
        WaveNet(dataclasses.replace(TINY, n_mels=5), PROFILE)
    with pytest.raises(ValueError, match="kernel_size must be 2 or 3, got 4"):
        dataclasses.replace(TINY, kernel_size=4)
    with pytest.raises(ValueError, match="gate_channels must be even.*got 7"):
        dataclasses.replace(TINY, gate_channels=7)
    with pytest.raises(ValueError, match="upsample_mode"):
        dataclasses.replace(TINY, upsample_mode="cubic")
    with pytest.raises(ValueError, match="dropout"):
        dataclasses.replace(TINY, dropout=1.5)
    assert WaveNet(dataclasses.replace(TINY, n_mels=0, upsample_scales=(3,)), PROFILE).conditioned is False
    # no scales given: chosen from the hop
    assert auto_upsample_scales(256) == (4, 4, 4, 4)
    assert auto_upsample_scales(200) == (5, 5, 8)
    assert auto_upsample_scales(275) == (5, 5, 11)
    auto = WaveNet(dataclasses.replace(TINY, upsample_scales=()), PROFILE)
    assert auto.upsampler.scales == (4, 4, 4) and auto.upsample(torch.zeros(1, 8, 3)).shape == (1, 6, 192)


def test_dilations_and_receptive_field_formula():
    cfg = dataclasses.replace(TINY, layers=7, dilation_cycle=3, kernel_size=3)
    assert cfg.dilations == (1, 2, 4, 1, 2, 4, 1)
    assert cfg.stacks == 3
    assert cfg.receptive_field == 2 * (1 + 2 + 4 + 1 + 2 + 4 + 1) + 1
    assert cfg.out_classes == 256


def test_card_round_trip_rebuilds_the_same_network():
    model = tiny(n_speakers=2, speaker_dim=3)
    card = model.card()
    assert card.family == "wavenet" and card.conditioning == "mel"
    assert card.receptive_field == model.receptive_field and card.parameters == model.parameter_count()
    config = dict(card.config)
    config["upsample_scales"] = list(config["upsample_scales"])  # as JSON gives it back
    rebuilt = build_model("wavenet", config, card.profile)
    rebuilt.load_state_dict(model.state_dict())
    assert get_family("wavenet").model_class is WaveNet
    x = torch.randint(0, 256, (1, 64))
    mel = torch.from_numpy(random_mel(1))[None]
    sp = torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(model(x, model.upsample(mel), sp), rebuilt.eval()(x, rebuilt.upsample(mel), sp))


# -- causality and receptive field -------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_impulse_response_spans_exactly_the_receptive_field(kernel_size):
    model = tiny(kernel_size=kernel_size, n_mels=0)
    length, p = 120, 20
    x = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(3))
    y = x.clone()
    y[0, p] = (x[0, p] + 100) % 256
    with torch.no_grad():
        changed = (model(x) - model(y)).abs().amax(dim=1)[0] > 0  # far taps move logits by ~1e-8
    positions = torch.nonzero(changed).flatten().tolist()
    assert positions == list(range(p, p + model.receptive_field))
    # logits at t predict the sample after inputs[t]: they see inputs[t - rf + 1 .. t]
    assert model.receptive_field == (kernel_size - 1) * sum(model.config.dilations) + 1


def test_logits_do_not_depend_on_later_inputs_with_conditioning():
    model = tiny(n_speakers=2, speaker_dim=3)
    mel = torch.from_numpy(random_mel(3))[None]
    cond = model.upsample(mel)
    x = torch.randint(0, 256, (1, 192))
    y = x.clone()
    y[0, 100:] = torch.randint(0, 256, (92,))
    sp = torch.tensor([1])
    with torch.no_grad():
        a, b = model(x, cond, sp), model(y, cond, sp)
    assert torch.equal(a[..., :100], b[..., :100])
    assert not torch.allclose(a[..., 100:], b[..., 100:])


@pytest.mark.parametrize("mode", ["transposed", "nearest"])
def test_mel_conditioning_stays_within_its_frame_radius(mode):
    model = tiny(upsample_mode=mode, mel_context=1)
    radius = model.conditioning_radius
    assert radius == (1 if mode == "transposed" else 1 + 2)  # nearest: (64 + 16) samples reach -> 2 frames
    frames, f, hop = 12, 5, PROFILE.hop_length
    mel = torch.from_numpy(random_mel(frames))[None]
    with torch.no_grad():
        base = model.upsample(mel)
        own = slice(f * hop, (f + 1) * hop)
        for g in range(frames):
            other = mel.clone()
            other[0, :, g] += 3.0
            moved = (model.upsample(other)[..., own] - base[..., own]).abs().max().item() > 1e-6
            assert moved == (abs(g - f) <= radius), f"frame {g} vs samples of frame {f}"
        # any slice computed from only the frames it needs equals the slice of the full result
        for start, stop in [(0, 50), (300, 333), (7 * hop - 1, 9 * hop + 5), (frames * hop - 70, frames * hop)]:
            torch.testing.assert_close(model.upsampler.span(mel, start, stop), base[..., start:stop], atol=1e-5, rtol=0)


def test_transposed_upsampling_without_context_keeps_each_frame_to_its_own_samples():
    model = tiny(mel_context=0)
    assert model.conditioning_radius == 0
    mel = torch.from_numpy(random_mel(4))[None]
    other = mel.clone()
    other[0, :, 2] -= 2.0
    with torch.no_grad():
        diff = (model.upsample(mel) - model.upsample(other)).abs().amax(dim=1)[0] > 1e-6
    assert torch.nonzero(diff).flatten().tolist() == list(range(128, 192))


# -- fast incremental path == full network -----------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"n_mels": 0},
        {},
        {"n_speakers": 3, "speaker_dim": 4},
        {"kernel_size": 3, "n_speakers": 3, "speaker_dim": 4, "upsample_mode": "nearest"},
    ],
    ids=["unconditioned", "mel", "mel+speaker", "k3+nearest+speaker"],
)
def test_incremental_logits_equal_full_convolution(changes):
    model = tiny(**changes)
    with torch.no_grad():  # random biases so that the bias folding is exercised too
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    batch, length = 2, 160
    x = torch.randint(0, 256, (batch, length))
    cond = speaker = None
    if model.conditioned:
        cond = model.upsample(torch.randn(batch, PROFILE.n_mels, 3))[..., :length]
    if model.config.n_speakers:
        speaker = torch.tensor([0, 2])
    with torch.no_grad():
        full = model(x, cond, speaker)
    fast = model.incremental_logits(x, cond, speaker)
    assert full.shape == fast.shape == (batch, 256, length)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


# -- sampling ------------------------------------------------------------------------------------------
def test_same_seed_same_samples_different_seed_different_samples():
    model = tiny()
    mel = random_mel(6)
    a = model.generate(GenerateRequest(mel=mel, seed=7, block_size=100))
    b = model.generate(GenerateRequest(mel=mel, seed=7, block_size=37))  # block size does not matter
    c = model.generate(GenerateRequest(mel=mel, seed=8))
    assert a.shape == (6 * 64,)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5


def test_fast_and_plain_generation_agree():
    model = tiny(kernel_size=3, n_speakers=2, speaker_dim=3)
    request = GenerateRequest(mel=random_mel(4), seed=3, temperature=0.8, options={"speaker": 1})
    fast = model.generate(request)
    plain = model.generate_plain(request)
    np.testing.assert_array_equal(fast, plain)
    other_speaker = model.generate(dataclasses.replace(request, options={"speaker": 0}))
    assert not np.array_equal(fast, other_speaker)


def test_temperature_zero_is_the_deterministic_argmax():
    model = tiny(n_mels=0)
    a = model.generate(GenerateRequest(num_samples=200, seed=1, temperature=0.0))
    b = model.generate(GenerateRequest(num_samples=200, seed=99, temperature=0.0))
    np.testing.assert_array_equal(a, b)
    # the greedy choice at every step, checked against the full network
    classes = model.encode(torch.from_numpy(a))[None]
    inputs = torch.cat([torch.tensor([[model.silence_class]]), classes[:, :-1]], dim=1)
    with torch.no_grad():
        greedy = model(inputs).argmax(dim=1)
    assert torch.equal(greedy, classes)
    warm = model.generate(GenerateRequest(num_samples=200, seed=1, temperature=1.0))
    assert not np.array_equal(a, warm)


def test_stream_yields_float32_blocks_in_range_of_the_requested_length():
    model = tiny()
    mel = random_mel(10)
    progress: list[tuple[int, int]] = []
    request = GenerateRequest(mel=mel, num_samples=500, block_size=128, progress=lambda d, t: progress.append((d, t)))
    blocks = list(model.stream(request))
    assert [len(b) for b in blocks] == [128, 128, 128, 116]
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    audio = np.concatenate(blocks)
    assert audio.min() >= -1.0 and audio.max() <= 1.0 and np.std(audio) > 0
    assert progress[-1] == (500, 500)
    assert len(model.generate(GenerateRequest(mel=mel))) == 10 * 64  # default length: all frames
    unconditional = tiny(n_mels=0)
    assert len(unconditional.generate(GenerateRequest(num_samples=77, block_size=10))) == 77
    with pytest.raises(ValueError, match="mel-conditioned"):
        model.generate(GenerateRequest(num_samples=100))
    with pytest.raises(ValueError, match="speaker"):
        model.generate(GenerateRequest(mel=mel, options={"speaker": 2}))
    torch.set_num_threads(2)  # stepping runs on one intra-op thread, then the setting is restored
    assert len(model.generate(GenerateRequest(mel=mel, num_samples=64, options={"threads": 1}))) == 64
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads"):
        model.generate(GenerateRequest(mel=mel, options={"threads": 0}))
    assert torch.get_num_threads() == 2


def test_folded_generation_is_the_crossfade_of_independently_generated_segments():
    model = tiny(mel_context=0)  # radius 0: a segment's conditioning is exactly that of its own frames
    mel = random_mel(40)
    length, overlap, hop = 640, 128, PROFILE.hop_length
    options = {"folded": True, "fold_length": length, "fold_overlap": overlap}
    blocks = list(model.stream(GenerateRequest(mel=mel, seed=5, temperature=0.0, block_size=256, options=options)))
    folded = np.concatenate(blocks)
    assert folded.shape == (40 * hop,) and folded.dtype == np.float32
    assert len(blocks) > 3  # segment 0 streams while the batch runs
    segments = []
    for i in range(4):
        frames = mel[:, i * length // hop : (i * length + length + overlap) // hop]
        alone = model.generate(GenerateRequest(mel=frames, seed=5, temperature=0.0))
        segments.append(np.pad(alone, (0, length + overlap - len(alone))))
    expected = join_segments(torch.from_numpy(np.stack(segments)), 40 * hop, length, overlap).numpy()
    np.testing.assert_array_equal(folded, expected)
    unfolded = model.generate(GenerateRequest(mel=mel, seed=5, temperature=0.0))
    np.testing.assert_array_equal(folded[: length + overlap // 2], unfolded[: length + overlap // 2])
    assert not np.array_equal(folded, unfolded)
    sampled = model.generate(GenerateRequest(mel=mel, seed=5, options=options))
    np.testing.assert_array_equal(sampled, model.generate(GenerateRequest(mel=mel, seed=5, options=options)))
    with pytest.raises(ValueError, match="fold_length >= fold_overlap"):
        model.generate(GenerateRequest(mel=mel, options={"folded": True, "fold_length": 10, "fold_overlap": 64}))


@pytest.mark.parametrize("folded", [False, True], ids=["plain-batch", "folded"])
def test_cancel_lands_within_200_ms_even_mid_block(folded):
    torch.manual_seed(0)
    cfg = WaveNetConfig(layers=30, residual_channels=64, gate_channels=128, skip_channels=128, n_mels=8,
                        upsample_scales=(4, 16))
    model = WaveNet(cfg, PROFILE).eval()
    token = CancelToken()
    frames = 5000
    request = GenerateRequest(mel=random_mel(frames), block_size=frames * 64, cancel=token, options={"folded": folded})
    # after 1.5 s: past the setup (stepper packing, first conditioning) even under heavy load
    got, latency = cancel_mid_run(lambda: list(model.stream(request)), token, after_s=1.5)
    assert latency < 0.2, f"stream ended {latency * 1000:.0f} ms after cancel"
    made = sum(len(b) for b in got)
    assert 0 < made < frames * 64  # the partial block is kept


# -- training --------------------------------------------------------------------------------------------
def tone_sequence(sample_rate: int = 16000) -> np.ndarray:
    """A real periodic signal: four notes of a bright tone (fundamental + harmonics), 0.5 s."""
    notes = [220.0, 277.18, 329.63, 440.0]
    t = np.arange(sample_rate // 8) / sample_rate
    parts = [sum(0.5 / h * np.sin(2 * np.pi * f * h * t) for h in (1, 2, 3)) for f in notes]
    return (0.8 * np.concatenate(parts) / 0.92).astype(np.float32)


def test_a_few_dozen_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = WaveNet(dataclasses.replace(TINY, n_mels=0, layers=8, dilation_cycle=4, residual_channels=16,
                                        gate_channels=32, skip_channels=32), PROFILE)
    audio = torch.from_numpy(tone_sequence())
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    losses = []
    for _ in range(30):
        starts = rng.integers(0, len(audio) - 512, size=4)
        batch = torch.stack([audio[s : s + 512] for s in starts])
        loss = model.training_loss(batch, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 5.0  # about ln(256) at the start
    assert np.mean(losses[-5:]) < 0.65 * losses[0], losses  # measured: about 0.43


def espeak_speech(tmp_path) -> np.ndarray:
    """A real English sentence from espeak-ng, resampled by sox to the test profile's 16 kHz."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        if os.environ.get("CI"):
            pytest.fail("espeak-ng and sox are needed (scripts/setup installs them)")
        pytest.skip("espeak-ng or sox is not installed")
    raw, wav = tmp_path / "speech22k.wav", tmp_path / "speech16k.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), "The quick brown fox jumps over the lazy dog."], check=True)
    subprocess.run(["sox", str(raw), "-r", str(PROFILE.sample_rate), str(wav)], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == PROFILE.sample_rate
    audio = 0.9 * audio / np.abs(audio).max()
    return audio[: len(audio) // PROFILE.hop_length * PROFILE.hop_length]


@pytest.mark.slow
def test_mel_conditioned_training_on_speech_lowers_the_loss_of_the_whole_utterance(tmp_path):
    audio = torch.from_numpy(espeak_speech(tmp_path))
    mel = MelFrontEnd(PROFILE)(audio)
    assert mel.shape == (PROFILE.n_mels, len(audio) // PROFILE.hop_length)
    torch.manual_seed(0)
    model = WaveNet(dataclasses.replace(TINY, layers=8, dilation_cycle=4, residual_channels=16, gate_channels=32,
                                        skip_channels=32), PROFILE)
    with torch.no_grad():
        before = model.training_loss(audio[None], mel[None]).item()
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    hop, frames = PROFILE.hop_length, 16
    for _ in range(40):
        starts = rng.integers(0, mel.shape[-1] - frames, size=4)
        batch = torch.stack([audio[f * hop : (f + frames) * hop] for f in starts])
        mels = torch.stack([mel[:, f : f + frames] for f in starts])
        loss = model.training_loss(batch, mels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model.training_loss(audio[None], mel[None]).item()
    assert before > 5.0
    assert after < 0.85 * before, (before, after)  # measured: 5.55 -> 4.22


def test_training_loss_checks_its_inputs():
    model = tiny(n_speakers=2, speaker_dim=3)
    audio = torch.zeros(2, 128)
    mel = torch.zeros(2, 8, 2)
    with pytest.raises(ValueError, match="needs speaker ids"):
        model.training_loss(audio, mel)
    with pytest.raises(ValueError, match="needs mel"):
        model.training_loss(audio, None, torch.tensor([0, 1]))
    loss = model.training_loss(audio, mel, torch.tensor([0, 1]))
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5])
def test_a_temperature_that_is_not_a_finite_non_negative_number_is_refused(temperature):
    model = WaveNet(WaveNetConfig(layers=2, dilation_cycle=2, residual_channels=8, gate_channels=8, skip_channels=8,
                                  n_mels=0), PROFILE)
    with pytest.raises(ValueError, match="finite number >= 0"):
        model.generate(GenerateRequest(num_samples=64, temperature=temperature))
