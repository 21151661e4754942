"""The DSP source-filter vocoder (``audio.source_filter``): a unit-power pulse train at the asked pitch,
and from a real mel a signal with that speech's envelope and pitch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.engine.audio import source_filter
from studio.engine.audio.features import compute_mel, get_profile
from studio.engine.audio.files import load

PROFILE = get_profile("speech16k")
CLIPS = Path(__file__).parent / "data" / "voice_clips"


def test_pulse_train_marks_each_period_with_unit_power():
    f0 = np.full(16000, 100.0)
    pulses = source_filter.pulse_train(f0, 16000)
    where = np.flatnonzero(pulses)
    assert np.all(np.diff(where) == 160)
    assert np.mean(pulses**2) == pytest.approx(1.0, rel=0.02)
    rising = source_filter.pulse_train(np.linspace(100.0, 200.0, 16000), 16000)
    gaps = np.diff(np.flatnonzero(rising))
    assert 155 <= gaps[0] <= 160 and 79 <= gaps[-1] <= 81  # the period follows the rising pitch


def test_source_filter_follows_a_real_mels_envelope_and_pitch():
    audio, _ = load(CLIPS / "ru-ru_0839.flac", sample_rate=PROFILE.sample_rate, mono=True)
    audio = audio[: int(2.5 * PROFILE.sample_rate)]
    mel = np.asarray(compute_mel(audio, PROFILE))
    made = source_filter.synthesise(mel, PROFILE, seed=1)
    assert made.shape == (mel.shape[-1] * PROFILE.hop_length,) and made.dtype == np.float32
    assert np.isfinite(made).all() and 0 < np.abs(made).max() <= 1.0
    noise = np.random.default_rng(0).standard_normal(made.size).astype(np.float32) * float(np.std(made))
    error = np.abs(np.asarray(compute_mel(made, PROFILE)) - mel).mean()
    noise_error = np.abs(np.asarray(compute_mel(noise, PROFILE)) - mel).mean()
    assert error < 0.5 * noise_error, (error, noise_error)
    metrics = pytest.importorskip("studio.engine.evaluation.metrics")
    pytest.importorskip("pyworld")
    reference = audio[: made.size]
    assert metrics.f0_error_cents(reference, made, PROFILE.sample_rate) < 30.0
    assert metrics.voicing_error(reference, made, PROFILE.sample_rate) < 0.4  # 0.31 here; white noise ~0.8


def test_a_malformed_mel_is_refused():
    with pytest.raises(ValueError, match="n_mels=80"):
        source_filter.synthesise(np.zeros((40, 10), np.float32), PROFILE)
