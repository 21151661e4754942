"""Mel front end: presets follow their documented conventions on known signals; framing, batching,
compatibility checks, conversions and Griffin-Lim reconstruction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from studio.engine.audio import features
from studio.engine.audio.features import (
    PRESETS,
    FeatureMismatchError,
    FeatureProfile,
    MelFrontEnd,
    check_compatible,
    compute_mel,
    convert_mel,
)
from studio.engine.audio.griffinlim import griffin_lim, mel_to_linear

WAVEGLOW, WAVERNN, SPEECH = PRESETS["waveglow"], PRESETS["wavernn"], PRESETS["speech16k"]


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def voice_like(seconds: float, sr: int) -> np.ndarray:
    """A harmonic tone with vibrato and a moving formant-ish tilt: speech-like spectra, exactly known."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * 140 * (t + 0.02 / (2 * np.pi * 5) * np.sin(2 * np.pi * 5 * t))
    x = sum((0.4 / k) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t + k)) * np.sin(k * phase) for k in range(1, 25))
    return (0.6 * x / np.max(np.abs(x))).astype(np.float32)


def test_presets_hold_their_documented_parameters():
    assert [PRESETS[n].name for n in ("waveglow", "wavernn", "speech16k")] == ["waveglow", "wavernn", "speech16k"]
    g = WAVEGLOW
    assert (g.sample_rate, g.n_fft, g.hop_length, g.win_length, g.n_mels, g.fmin, g.fmax) == (
        22050, 1024, 256, 1024, 80, 0.0, 8000.0)
    assert (g.power, g.mel_scale, g.mel_norm, g.log, g.clamp_min) == (1.0, "slaney", "slaney", "ln", 1e-5)
    r = WAVERNN
    assert (r.sample_rate, r.n_fft, r.hop_length, r.win_length, r.n_mels, r.fmin, r.fmax) == (
        22050, 2048, 275, 1100, 80, 40.0, 11025.0)
    assert (r.log, r.ref_level_db, r.min_level_db) == ("db", 20.0, -100.0)
    s = SPEECH
    assert (s.sample_rate, s.n_fft, s.hop_length, s.win_length, s.n_mels, s.fmin, s.fmax, s.log) == (
        16000, 1024, 200, 1024, 80, 0.0, 8000.0, "ln")
    for p in PRESETS.values():
        features.validate_profile(p)
        assert FeatureProfile.from_dict(p.to_dict()) == p


def test_mel_scales():
    assert features.hz_to_mel(1000.0) == pytest.approx(15.0)
    assert features.hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above 1 kHz
    assert features.hz_to_mel(700.0, "htk") == pytest.approx(2595 * np.log10(2))
    f = np.array([0.0, 300.0, 999.0, 1000.0, 4321.0, 11025.0])
    for scale in ("slaney", "htk"):
        np.testing.assert_allclose(features.mel_to_hz(features.hz_to_mel(f, scale), scale), f, atol=1e-9)


def test_slaney_filters_have_equal_area():
    basis = features.mel_filterbank(WAVERNN)
    assert basis.shape == (80, 1025) and basis.min() >= 0
    bin_hz = WAVERNN.sample_rate / WAVERNN.n_fft
    areas = basis.sum(axis=1) * bin_hz  # triangle of height 2/(f[i+2]-f[i]): area 1 Hz·(1/Hz)
    np.testing.assert_allclose(areas[20:], 1.0, rtol=0.02)
    unnormalised = features.mel_filterbank(dataclasses.replace(WAVERNN, mel_norm=None))
    assert unnormalised.max() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", ["waveglow", "wavernn", "speech16k"])
def test_1khz_sine_peaks_in_the_band_centred_nearest_1khz(name):
    p = PRESETS[name]
    mel = compute_mel(sine(1000, 0.5, p.sample_rate), p)
    # Band centres from the documented construction: n_mels + 2 points evenly spaced in Slaney mel.
    points = np.linspace(features.hz_to_mel(p.fmin), features.hz_to_mel(p.fmax), p.n_mels + 2)[1:-1]
    expected = int(np.argmin(np.abs(features.mel_to_hz(points) - 1000.0)))
    assert np.argmax(mel[:, 2:-2].mean(axis=1)) == expected
    if name == "waveglow":
        assert expected == 26


def test_silence_values():
    assert np.all(compute_mel(np.zeros(4000, np.float32), WAVEGLOW) == np.float32(np.log(1e-5)))
    assert np.all(compute_mel(np.zeros(4000, np.float32), SPEECH) == np.float32(np.log(1e-5)))
    assert np.all(compute_mel(np.zeros(4000, np.float32), WAVERNN) == 0.0)
    assert features.silence_value(WAVEGLOW) == pytest.approx(np.log(1e-5))


def test_level_scaling_follows_the_log_convention():
    x = voice_like(0.5, 22050)
    ln_quiet, ln_loud = compute_mel(0.25 * x, WAVEGLOW), compute_mel(0.5 * x, WAVEGLOW)
    loud = ln_quiet > np.log(1e-5) + 3  # bands well above the clamp
    np.testing.assert_allclose((ln_loud - ln_quiet)[loud], np.log(2), atol=1e-3)
    db_quiet, db_loud = compute_mel(0.25 * x, WAVERNN), compute_mel(0.5 * x, WAVERNN)
    assert db_loud.min() >= 0 and db_loud.max() <= 1
    inside = (db_quiet > 0.05) & (db_loud < 0.95)
    np.testing.assert_allclose((db_loud - db_quiet)[inside], 20 * np.log10(2) / 100, atol=1e-4)


@pytest.mark.parametrize("name", ["waveglow", "wavernn", "speech16k"])
@pytest.mark.parametrize("length", [0, 100, 199, 200, 275, 1000, 4099, 22050])
def test_frame_count_is_samples_floor_hop(name, length):
    p = PRESETS[name]
    mel = compute_mel(np.random.default_rng(length).uniform(-0.5, 0.5, length).astype(np.float32), p)
    assert mel.shape == (p.n_mels, length // p.hop_length)
    assert np.isfinite(mel).all()


@pytest.mark.parametrize("center, offset", [(True, 0), (False, 128)])
def test_frame_centres(center, offset):
    p = dataclasses.replace(WAVEGLOW, center=center)
    x = np.zeros(40 * 256, np.float32)
    x[10 * 256 + offset] = 1.0  # a click on frame 10's centre
    energy = compute_mel(x, p).mean(axis=0)
    assert int(np.argmax(energy)) == 10
    assert energy[9] == pytest.approx(energy[11], rel=0.05)  # symmetric around it


def test_batch_equals_items_and_is_deterministic():
    front = MelFrontEnd("speech16k")
    audio = torch.from_numpy(np.stack([voice_like(0.4, 16000) * g for g in (1.0, 0.3, 0.05)]))
    batch = front(audio)
    assert batch.shape == (3, 80, len(audio[0]) // 200) and batch.dtype == torch.float32
    for i in range(3):
        torch.testing.assert_close(batch[i], front(audio[i]), atol=1e-5, rtol=0)
    torch.testing.assert_close(front(audio), batch, atol=0, rtol=0)
    assert front.state_dict() == {}  # buffers are rebuilt from the profile, not saved


def test_gradients_are_finite_even_on_silence():
    audio = torch.zeros(1, 4000, requires_grad=True)
    MelFrontEnd("waveglow")(audio + 1e-3 * torch.sin(torch.arange(4000.0))).sum().backward()
    assert torch.isfinite(audio.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    audio = torch.from_numpy(voice_like(1.0, 22050))[None]
    cpu = MelFrontEnd("waveglow")(audio)
    gpu = MelFrontEnd("waveglow").cuda()(audio.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-4)


def test_compress_decompress_round_trip_numpy_and_torch():
    energies = np.geomspace(1e-4, 100, 50)
    for p in (WAVEGLOW, WAVERNN):
        values = features.compress(energies, p)
        back = features.decompress(values, p)
        keep = (values > 0) & (values < 1) if p.log == "db" else np.ones_like(values, bool)
        np.testing.assert_allclose(back[keep], energies[keep], rtol=1e-9)
        np.testing.assert_allclose(features.compress(torch.from_numpy(energies), p).numpy(), values, rtol=1e-9)


# ------------------------------------------------------------------------------- compatibility
def test_same_features_under_another_name_are_compatible():
    check_compatible(WAVEGLOW, dataclasses.replace(WAVEGLOW, name="my-copy"))
    # Unused dB fields do not matter to a natural-log profile.
    check_compatible(WAVEGLOW, dataclasses.replace(WAVEGLOW, ref_level_db=0.0))


def test_different_hop_or_rate_is_refused_with_the_fields_named():
    with pytest.raises(FeatureMismatchError) as info:
        check_compatible(WAVEGLOW, WAVERNN)
    err = info.value
    assert isinstance(err, ValueError) and not err.convertible
    assert {"hop_length", "n_fft", "win_length", "fmin", "fmax", "log"} <= set(err.differences)
    assert err.differences["hop_length"] == (256, 275)
    assert "recompute the mel from the audio" in str(err) and "hop_length 256 vs 275" in str(err)
    mel = compute_mel(voice_like(0.3, 22050), WAVEGLOW)
    with pytest.raises(FeatureMismatchError, match="sample_rate"):
        convert_mel(mel, WAVEGLOW, SPEECH.__class__(**{**WAVEGLOW.to_dict(), "sample_rate": 16000}))


def test_scale_change_converts_exactly():
    db_profile = dataclasses.replace(
        WAVEGLOW, name="waveglow-db", log="db", ref_level_db=20.0, min_level_db=-100.0
    )
    with pytest.raises(FeatureMismatchError) as info:
        check_compatible(WAVEGLOW, db_profile)
    assert info.value.convertible and set(info.value.differences) == {"log", "ref_level_db", "min_level_db"}
    x = voice_like(0.5, 22050)
    direct = compute_mel(x, db_profile)
    converted = convert_mel(compute_mel(x, WAVEGLOW), WAVEGLOW, db_profile)
    assert converted.dtype == np.float32
    np.testing.assert_allclose(converted, direct, atol=1e-5)
    back = convert_mel(torch.from_numpy(direct), db_profile, WAVEGLOW)
    assert isinstance(back, torch.Tensor)
    above_floor = direct > 0.01
    np.testing.assert_allclose(back.numpy()[above_floor], compute_mel(x, WAVEGLOW)[above_floor], atol=1e-4)


def test_filterbank_change_converts_through_the_linear_spectrogram():
    target = dataclasses.replace(WAVEGLOW, name="waveglow-64", n_mels=64, fmax=7000.0)
    x = voice_like(0.6, 22050)
    direct = compute_mel(x, target)
    converted = convert_mel(compute_mel(x, WAVEGLOW), WAVEGLOW, target)
    assert converted.shape == direct.shape
    loud = direct > np.log(1e-5) + 4
    error = np.abs(converted - direct)[loud]
    assert np.median(error) < 0.15  # nats: about 1.3 dB
    assert np.mean(error) < 0.3
    naive = np.abs(compute_mel(x, WAVEGLOW)[:64] - direct)[loud]
    assert np.mean(error) < 0.5 * np.mean(naive)  # far better than pretending the bands line up


# ------------------------------------------------------------------------------- Griffin-Lim
def test_mel_to_linear_reproduces_the_mel():
    x = voice_like(0.4, 22050)
    mel = compute_mel(x, WAVEGLOW)
    linear = mel_to_linear(mel, WAVEGLOW)
    assert linear.shape == (513, mel.shape[1]) and linear.min() >= 0
    again = features.compress(features.mel_filterbank(WAVEGLOW) @ linear, WAVEGLOW)
    loud = mel > np.log(1e-5) + 3
    assert np.mean(np.abs(again - mel)[loud]) < 0.05


def test_griffin_lim_reconstructs_audio_whose_mel_matches():
    p = SPEECH
    x = voice_like(0.5, p.sample_rate)
    mel = compute_mel(x, p)
    audio = griffin_lim(mel, p, n_iter=32)
    assert audio.shape == (mel.shape[1] * p.hop_length,) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0
    loud = (mel > np.log(1e-5) + 3)[:, 3:-3]  # bands well above the floor, away from the edges

    def mel_error(y: np.ndarray) -> float:
        return float(np.mean(np.abs(compute_mel(y, p) - mel)[:, 3:-3][loud]))

    error, random_phase = mel_error(audio), mel_error(griffin_lim(mel, p, n_iter=0))
    assert error < 0.35  # nats (measured 0.26; random phase 0.82)
    assert error < 0.5 * random_phase
    np.testing.assert_array_equal(griffin_lim(mel, p, n_iter=2, seed=3), griffin_lim(mel, p, n_iter=2, seed=3))
    batch = griffin_lim(np.stack([mel, mel]), p, n_iter=2)
    assert batch.shape == (2, len(audio))
