"""Rendering converted speech with a bundled vocoder instead of WORLD: ``renderer_for``, ``studio convert
--render`` and ``studio eval-convert --render``, with the real bundled models on real (espeak-ng) speech."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs the voice extra (pyworld)")

from studio.engine.audio import files  # noqa: E402
from studio.engine.catalog import ModelNotFoundError  # noqa: E402
from studio.engine.convert import (  # noqa: E402
    ConversionTarget,
    VocoderRenderer,
    WorldRenderer,
    convert_audio,
    renderer_for,
)
from studio.engine.convert.transforms import VoiceTransform  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory) -> Path:
    """About 2.5 s of espeak-ng English at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    path = tmp_path_factory.mktemp("speech") / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path),
                    "The quick brown fox jumps over the lazy dog."], check=True, capture_output=True)
    return path


def envelope(audio: np.ndarray, hop: int = 320) -> np.ndarray:
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    return np.sqrt((frames**2).mean(axis=1))


def test_renderer_for_names_world_or_a_mel_vocoder_and_refuses_the_rest():
    assert isinstance(renderer_for(None), WorldRenderer) and isinstance(renderer_for("world"), WorldRenderer)
    vocoder = renderer_for("speech-wavernn", seed=3)
    assert isinstance(vocoder, VocoderRenderer) and vocoder.name == "vocoder:speech-wavernn"
    assert vocoder.request_options == {"seed": 3}
    with pytest.raises(ModelNotFoundError, match="no model called 'nope'"):
        renderer_for("nope")
    with pytest.raises(ValueError, match="not mel-conditioned"):
        renderer_for("music-wavenet")  # free music: nothing to condition on


def test_a_vocoder_renders_the_converted_speech_with_its_timing(speech_file):
    audio, sr = files.load(speech_file, sample_rate=RATE, mono=True)
    target = ConversionTarget(transform=VoiceTransform(pitch_semitones=3.0))
    world = convert_audio(audio, sr, target).audio
    neural = convert_audio(audio, sr, target, renderer=renderer_for("speech-wavernn")).audio
    assert neural.shape == world.shape and np.isfinite(neural).all()
    assert not np.allclose(neural, world, atol=1e-3)  # another renderer, not WORLD again
    # the same words at the same moments: the loudness contours of both renderings agree
    assert np.corrcoef(envelope(neural), envelope(world))[0, 1] > 0.8


def test_convert_cli_renders_with_a_vocoder_and_refuses_one_live(speech_file, tmp_path):
    out = tmp_path / "up.wav"
    done = subprocess.run(
        [sys.executable, "-m", "studio", "convert", str(speech_file), "--pitch", "3", "--render", "speech-wavenet",
         "--out", str(out), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["renderer"] == "vocoder:speech-wavenet"
    written, rate = files.load(out)
    source, source_rate = files.load(speech_file)
    assert abs(written.shape[0] / rate - source.shape[0] / source_rate) < 0.01 and np.abs(written).max() > 0.01
    for extra, message in ((["--live", "--render", "speech-wavenet"], "--live renders with WORLD"),
                           (["--render", "music-wavenet"], "not mel-conditioned")):
        args = ["--out", str(tmp_path / "x.wav")] if "--live" not in extra else []
        refused = subprocess.run(
            [sys.executable, "-m", "studio", "convert", *([] if "--live" in extra else [str(speech_file)]), *extra, *args],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-1000:]


def test_eval_convert_scores_a_vocoder_rendering_and_says_so(speech_file):
    done = subprocess.run(
        [sys.executable, "-m", "studio", "eval-convert", "--pitch", "3", "--render", "speech-wavernn", "--no-content",
         "--json", str(speech_file)], capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a bound missed (the report still comes)
    report = json.loads(done.stdout)
    assert report["target"] == "+3 semitones, rendered by vocoder:speech-wavernn"
    (clip,) = report["clips"]
    assert clip["duration_ratio"] == pytest.approx(1.0, abs=0.01)
    assert 1.5 < clip["shift_st"] < 4.5  # the vocoder voices the shifted pitch (trained on another speaker)


def test_a_cancelled_vocoder_render_stops_after_its_first_block(speech_file):
    """The conversion worker hands its cancel token to the vocoder (``renderer_for(name, cancel=token)``):
    once set, the model's stream ends after the block in hand and the rest of the rendering stays silent."""
    from studio.engine.convert.world import analyze
    from studio.engine.models.base import CancelToken

    audio, sr = files.load(speech_file, sample_rate=RATE, mono=True)
    features = analyze(audio, sr)
    token = CancelToken()
    renderer = renderer_for("speech-wavernn", cancel=token, block_size=800)
    whole = renderer.render(features)
    token.cancel()
    stopped = renderer.render(features)
    assert stopped.shape == whole.shape
    after_first_block = slice(2 * 800, None)  # one block at the model's rate (resampled): nothing after it
    assert np.abs(whole[after_first_block]).max() > 0.01 and not np.any(stopped[after_first_block])
