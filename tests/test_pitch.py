"""Pitch read back from mel features (``audio.pitch``): accuracy on harmonic signals and on real
speech against WORLD's DIO on the audio, voicing on noise, and the per-sample source the WaveRNN's
pitch inputs see (phase following the F0, spans equal to the whole)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.engine.audio import pitch
from studio.engine.audio.features import compute_mel, get_profile
from studio.engine.audio.files import load

PROFILE = get_profile("speech16k")
SR, HOP = PROFILE.sample_rate, PROFILE.hop_length
CLIPS = Path(__file__).parent / "data" / "voice_clips"


def mel_of(audio: np.ndarray) -> torch.Tensor:
    """[1, n_mels, frames] of the speech profile."""
    return torch.as_tensor(np.asarray(compute_mel(audio.astype(np.float32), PROFILE))).reshape(1, PROFILE.n_mels, -1)


def harmonic(f0: float | np.ndarray, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonics up to 7 kHz with a falling, speech-like envelope and random phases; ``f0`` a number or
    a per-sample contour (Hz)."""
    n = int(seconds * SR)
    contour = np.full(n, f0, dtype=np.float64) if np.isscalar(f0) else np.asarray(f0, dtype=np.float64)
    phase = 2 * np.pi * np.cumsum(contour) / SR
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for h in range(1, int(7000 / contour.max())):
        x += np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h * (contour * h < 7500)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200.0 * np.abs(np.log2(a / b))


@pytest.mark.parametrize("f0", [85.0, 123.0, 180.0, 260.0])
def test_a_steady_harmonic_tone_is_tracked_within_ten_cents(f0):
    track, periodicity = pitch.track(mel_of(harmonic(f0)), PROFILE)
    inner = slice(3, -3)
    assert np.median(cents(track[0, inner].numpy(), f0)) < 10.0
    assert periodicity[0, inner].min() > 0.9 and periodicity[0, inner].max() < 1.1  # calibrated: ~1 at any pitch
    assert pitch.voicing(periodicity[0, inner]).min() == 1.0


def test_noise_reads_as_unvoiced():
    noise = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    _, periodicity = pitch.track(mel_of(noise), PROFILE)
    assert (pitch.voicing(periodicity) == 0).float().mean() > 0.9


def test_real_speech_is_tracked_as_dio_hears_it():
    """Held-out festvox-ru speech: on frames both call voiced, the mel's F0 is within a few tens of
    cents of DIO + StoneMask on the audio (5-11 cents median on the six test utterances)."""
    pyworld = pytest.importorskip("pyworld", reason="the reference tracker is WORLD's (scripts/setup installs it)")
    audio, _ = load(CLIPS / "ru-ru_0839.flac", sample_rate=SR, mono=True)
    track, periodicity = pitch.track(mel_of(audio), PROFILE)
    x = audio.astype(np.float64)
    times = np.arange(track.shape[-1] + 2) * HOP / SR
    dio, t = pyworld.dio(x, SR, f0_floor=60.0, f0_ceil=400.0, frame_period=1000.0 * HOP / SR)
    dio = pyworld.stonemask(x, dio, t, SR)
    centres = (np.arange(track.shape[-1]) + 0.5) * HOP / SR
    reference = np.interp(centres, times[: len(dio)], dio)
    voiced_both = (np.interp(centres, times[: len(dio)], (dio > 0).astype(float)) == 1) & (periodicity[0].numpy() > 0.5)
    assert voiced_both.sum() > 100
    error = cents(track[0].numpy()[voiced_both], reference[voiced_both])
    assert np.median(error) < 20.0, np.median(error)
    assert (error > 300).mean() < 0.03


def test_the_source_phase_advances_at_the_tracked_pitch():
    """The per-sample phase of a gliding tone's source turns at the F0 the tracker reads: its
    per-sample step is 2 pi F0 / sr, and ``v cos``/``v sin`` are the cosine and sine of it."""
    glide = np.linspace(110.0, 160.0, SR)
    mel = mel_of(harmonic(glide))
    track, _ = pitch.track(mel, PROFILE)
    source = pitch.SourceTrack(mel, PROFILE)
    n = mel.shape[-1] * HOP
    phases = source.phases(n)[0].numpy()
    steps = np.diff(np.unwrap(phases))
    expected = pitch.per_sample(track, HOP, 0, n - 1)[0].numpy() * 2 * np.pi / SR  # phase[i+1] - phase[i]: sample i
    np.testing.assert_allclose(steps, expected, rtol=1e-6, atol=1e-9)
    inner = slice(5 * HOP, n - 5 * HOP)
    measured = steps[inner] * SR / (2 * np.pi)
    assert np.median(cents(measured, glide[: n - 1][inner])) < 12.0
    features = source.features(0, n)[0].numpy()
    v = features[:, 2]
    assert v[inner].min() == 1.0
    np.testing.assert_allclose(features[inner, 0], np.sin(phases[inner]), atol=1e-5)
    np.testing.assert_allclose(features[inner, 1], np.cos(phases[inner]), atol=1e-5)
    pulse = features[inner, 3]  # a bump at phase 0, once per period
    np.testing.assert_allclose(pulse, np.exp(pitch.PULSE_SHARPNESS * (np.cos(phases[inner]) - 1)), atol=1e-5)
    assert pulse[np.abs(phases[inner]) < 0.05].min() > 0.95 and pulse[np.abs(phases[inner]) > 1.0].max() < 0.01


def test_spans_in_any_order_equal_the_whole_source():
    audio, _ = load(CLIPS / "ru-ru_0803.flac", sample_rate=SR, mono=True)
    mel = mel_of(audio[: 3 * SR])
    n = mel.shape[-1] * HOP + 300  # past the last frame: its pitch is held
    whole = pitch.SourceTrack(mel, PROFILE, block_frames=10_000).features(0, n)
    blocks = pitch.SourceTrack(mel, PROFILE, block_frames=7)
    cuts = [0, 1, 199, 200, 4321, 20_000, n]
    later_first = [blocks.features(a, b) for a, b in reversed(list(zip(cuts[:-1], cuts[1:], strict=True)))]
    joined = torch.cat(list(reversed(later_first)), dim=1)
    assert joined.shape == whole.shape == (1, n, pitch.SOURCE_FEATURES)
    assert (joined - whole).abs().max() < 1e-5
    assert whole[..., 2].max() == 1.0 and whole[..., 2].min() == 0.0  # voiced and unvoiced stretches


def test_a_start_phase_shifts_the_whole_source():
    mel = mel_of(harmonic(140.0, seconds=0.5))
    n = mel.shape[-1] * HOP
    base = pitch.SourceTrack(mel, PROFILE).phases(n)
    shifted = pitch.SourceTrack(mel, PROFILE, start_phase=torch.tensor([1.0])).phases(n)
    assert torch.allclose(pitch.wrap(shifted - base), torch.full_like(base, 1.0), atol=1e-9)


def test_frame_values_are_interpolated_between_frame_centres_and_held_at_the_ends():
    frames = torch.tensor([[1.0, 3.0, 7.0]], dtype=torch.float64)
    hop = 4
    values = pitch.per_sample(frames, hop, 0, 12)[0]
    assert values[:3].tolist() == [1.0, 1.0, 1.0]  # before frame 0's centre (sample 2)
    assert values[2].item() == 1.0 and values[6].item() == 3.0 and values[10].item() == 7.0  # centres
    assert math.isclose(values[4].item(), 2.0) and math.isclose(values[8].item(), 5.0)  # halfway
    assert values[11].item() == 7.0
    part = pitch.per_sample(frames[:, 1:], hop, 6, 11, first=1, total=3)
    assert torch.equal(part[0], values[6:11])
    with pytest.raises(ValueError, match="need frames outside"):
        pitch.per_sample(frames[:, 1:], hop, 0, 4, first=1, total=3)
