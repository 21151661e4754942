"""Spectral projection (``audio.projection``): the output is brought to the mel it was asked for and keeps
its own detail, streaming equals the whole-signal computation, and a model's ``spectral_projection``
setting (or a request's override) sends its stream through it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from studio.engine.audio import projection
from studio.engine.audio.features import compute_mel, get_profile
from studio.engine.audio.files import load
from studio.engine.models.base import PROJECTION_OPTION, GenerateRequest

PROFILE = get_profile("speech16k")
CLIPS = Path(__file__).parent / "data" / "voice_clips"
BUNDLED = Path(__file__).resolve().parent.parent / "resources" / "models"


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, np.ndarray]:
    """2.5 s of real held-out speech (festvox-ru ru_0839) and its speech16k mel."""
    audio, _ = load(CLIPS / "ru-ru_0839.flac", sample_rate=PROFILE.sample_rate, mono=True)
    audio = audio[: int(2.5 * PROFILE.sample_rate)]
    return audio, np.asarray(compute_mel(audio, PROFILE))


def mel_distance(audio: np.ndarray, mel: np.ndarray) -> float:
    """Mean absolute difference of ln-mels over the frames both have."""
    made = np.asarray(compute_mel(audio.astype(np.float32), PROFILE))
    n = min(made.shape[-1], mel.shape[-1])
    return float(np.abs(made[:, :n] - mel[:, :n]).mean())


def test_projection_gives_noise_the_mels_magnitudes_and_iterations_make_them_consistent(speech):
    """White noise has none of the speech's envelope; one pass brings its mel within a small error of the
    speech's, and more passes reduce what is left (overlap-add of the corrected frames changes them
    again, less with every pass)."""
    audio, mel = speech
    noise = np.random.default_rng(0).standard_normal(audio.size).astype(np.float32) * 0.1
    before = mel_distance(noise, mel)
    once = projection.project(noise, mel, PROFILE, 0)
    more = projection.project(noise, mel, PROFILE, 8)
    assert once.shape == more.shape == noise.shape and once.dtype == np.float32
    assert np.abs(once).max() <= 1.0
    assert mel_distance(once, mel) < 0.2 * before, (before, mel_distance(once, mel))
    assert mel_distance(more, mel) < 0.8 * mel_distance(once, mel), (mel_distance(once, mel), mel_distance(more, mel))


def test_projection_keeps_a_signals_own_phase(speech):
    """Projecting the original onto its own mel changes it little (the gains are about 1; the phase and
    the detail within each band are kept), where Griffin-Lim's phase would not line up: the result
    stays correlated with the original sample by sample."""
    audio, mel = speech
    out = projection.project(audio, mel, PROFILE, 2)
    correlation = float(np.corrcoef(audio, out)[0, 1])
    assert correlation > 0.95, correlation


@pytest.mark.parametrize("iterations", [0, 3, 32])
def test_streaming_projection_equals_the_whole_signal_for_any_block_sizes(speech, iterations):
    """Exact for up to 2 passes' reach (margin), and below float32 rounding past it, where the margin
    stops growing at three windows (what lies further away reaches a chunk 120-165 dB down)."""
    audio, mel = speech
    total = audio.size - 77  # not a whole number of hops
    whole = projection.project(audio[:total], mel, PROFILE, iterations)
    rng = np.random.default_rng(iterations)
    projector = projection.Projector(mel, PROFILE, iterations, total, chunk_frames=16)
    out, at = [], 0
    while at < total:
        step = int(rng.integers(1, 2500))
        out += projector.process(audio[at : min(at + step, total)])
        at += step
        assert sum(b.size for b in out) <= at  # never ahead of its input
    out += projector.finish()
    joined = np.concatenate(out)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=1e-6)
    assert np.abs(whole).max() > 0.1


def test_a_stream_that_ends_early_is_projected_to_where_it_ended(speech):
    audio, mel = speech
    projector = projection.Projector(mel, PROFILE, 2, audio.size, chunk_frames=16)
    got = list(projection.projected([audio[:9000], audio[9000:15000]], projector))
    assert sum(b.size for b in got) == 15000
    assert all(np.isfinite(b).all() for b in got)


def test_the_margin_covers_what_a_chunk_depends_on_up_to_three_windows():
    """One frame reaches ceil(n_fft / hop) frames; each pass spreads it once more, up to three windows."""
    window = math.ceil(1024 / 200)
    assert projection.margin_frames(PROFILE, 0) == window + 1
    assert projection.margin_frames(PROFILE, 1) == 2 * window + 1
    assert projection.margin_frames(PROFILE, 4) == projection.margin_frames(PROFILE, 64) == 3 * window + 1


@pytest.mark.parametrize("bad", [-1, projection.MAX_ITERATIONS + 1, 1.5, "2", True])
def test_bad_iteration_counts_are_refused(bad):
    with pytest.raises(ValueError, match="spectral projection iterations"):
        projection.check_iterations(bad)


def bundled(name: str):
    from studio.engine.checkpoints import load_model

    return load_model(BUNDLED / name)


@pytest.mark.parametrize("name", ["speech-wavenet", "speech-waveglow"])
def test_a_models_stream_is_projected_as_its_config_says(name, speech):
    """The model's raw stream (override: off), projected as a whole, equals what the stream yields with
    the setting on, from the config or from the request."""
    _, mel = speech
    mel = mel[:, :80]  # 1 s
    model = bundled(name)
    raw = model.generate(GenerateRequest(mel=mel, seed=3, options={PROJECTION_OPTION: None}))
    expected = projection.project(raw, mel, model.profile, 2)
    by_request = model.generate(GenerateRequest(mel=mel, seed=3, options={PROJECTION_OPTION: 2}))
    configured = model.reconfigured({"spectral_projection": 2})
    assert configured.config.spectral_projection == 2 and configured.name == model.name
    by_config = configured.generate(GenerateRequest(mel=mel, seed=3))
    for made in (by_request, by_config):
        assert made.shape == raw.shape
        np.testing.assert_allclose(made, expected, atol=1e-5)
    assert mel_distance(expected, mel) < mel_distance(raw, mel)


def test_a_projected_stream_reports_progress_to_the_end_and_keeps_what_was_made_when_cancelled(speech):
    from studio.engine.models.base import CancelToken

    _, mel = speech
    model = bundled("speech-waveglow").reconfigured({"spectral_projection": 1})
    seen: list[tuple[int, int]] = []
    request = GenerateRequest(mel=mel, seed=0, progress=lambda d, t: seen.append((d, t)), options={"chunk_frames": 16})
    blocks = list(model.stream(request))
    total = mel.shape[-1] * PROFILE.hop_length
    assert len(blocks) > 1 and sum(b.size for b in blocks) == total and seen[-1] == (total, total)
    cancel = CancelToken()
    kept = []
    for block in model.stream(GenerateRequest(mel=mel, seed=0, cancel=cancel, options={"chunk_frames": 16})):
        kept.append(block)
        cancel.cancel()  # after the first projected block: the flow has made more than that by now
    made = sum(b.size for b in kept)
    assert len(kept) > 1 and kept[0].size < made < total, (len(kept), made, total)


def test_projection_settings_are_checked_and_saved_with_the_model(tmp_path):
    from studio.engine.checkpoints import load_model, save_checkpoint
    from studio.engine.models.wavenet import WaveNetConfig

    with pytest.raises(ValueError, match="spectral projection iterations"):
        WaveNetConfig(n_mels=80, spectral_projection=-2)
    with pytest.raises(ValueError, match="needs a mel"):
        WaveNetConfig(n_mels=0, spectral_projection=2)
    model = bundled("speech-wavenet")
    with pytest.raises(ValueError, match="spectral projection iterations"):
        model.generate(GenerateRequest(mel=np.zeros((80, 4), np.float32), options={PROJECTION_OPTION: 999}))
    changed = model.reconfigured({"spectral_projection": 4})
    save_checkpoint(changed, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config == dataclasses.replace(model.config, spectral_projection=4)
