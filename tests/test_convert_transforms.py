"""Own-voice transforms and voice files, through real WORLD analysis/synthesis on real speech."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs the voice extra (pyworld)")

from studio.engine.convert import pipeline, streaming, voice, world  # noqa: E402
from studio.engine.convert.transforms import VoiceTransform  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 2.5 s of synthetic English speech (espeak-ng), 16 kHz mono float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    raw = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", "The quick brown fox jumps over the lazy dog."],
        check=True, capture_output=True,
    ).stdout
    import io

    import soundfile as sf

    audio, sr = sf.read(io.BytesIO(raw), dtype="float32")
    from studio.engine.audio.resample import resample

    return resample(audio, sr, RATE)


def semitones(a: float, b: float) -> float:
    return 12.0 * float(np.log2(b / a))


@pytest.mark.parametrize("shift", [-5.0, 4.0, 7.0])
def test_pitch_shift_hits_the_interval_and_keeps_duration(speech, shift):
    result = pipeline.convert_audio(speech, RATE, pipeline.ConversionTarget(transform=VoiceTransform(pitch_semitones=shift)))
    assert abs(result.audio.shape[0] - speech.shape[0]) <= 0.01 * speech.shape[0]
    measured_in = pipeline.median_f0(world.analyze(speech, RATE))
    measured_out = pipeline.median_f0(world.analyze(result.audio, result.sample_rate))
    assert abs(semitones(measured_in, measured_out) - shift) <= 0.3


def test_formant_shift_moves_the_spectral_centroid_not_the_pitch(speech):
    up = pipeline.convert_audio(speech, RATE, pipeline.ConversionTarget(transform=VoiceTransform(formant_ratio=1.25)))
    plain = pipeline.convert_audio(speech, RATE, pipeline.ConversionTarget())

    def centroid(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
        return float((spec * freqs).sum() / spec.sum())

    assert centroid(up.audio) > 1.1 * centroid(plain.audio)
    f_plain = pipeline.median_f0(world.analyze(plain.audio, RATE))
    f_up = pipeline.median_f0(world.analyze(up.audio, RATE))
    assert abs(semitones(f_plain, f_up)) < 0.5


def test_whisper_has_no_voicing_but_keeps_loudness(speech):
    out = pipeline.convert_audio(speech, RATE, pipeline.ConversionTarget(transform=VoiceTransform(whisper=True)))
    voiced_in = float(np.mean(world.analyze(speech, RATE).voiced))
    voiced_out = float(np.mean(world.analyze(out.audio, RATE).voiced))
    assert voiced_in > 0.3 and voiced_out < 0.1 * voiced_in
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(out.audio) == pytest.approx(rms(speech), rel=0.05)


def test_transform_arguments_are_checked():
    with pytest.raises(ValueError, match="semitones"):
        VoiceTransform(pitch_semitones=30)
    with pytest.raises(ValueError, match="formant ratio"):
        VoiceTransform(formant_ratio=3.0)


def test_streaming_converter_shifts_pitch_block_by_block(speech):
    block = streaming.BlockConverter(pipeline.ConversionTarget(transform=VoiceTransform(pitch_semitones=4.0)), gate_db=None)
    out = block.process_all(speech)
    assert out.shape == speech.shape
    measured_in = pipeline.median_f0(world.analyze(speech, RATE))
    measured_out = pipeline.median_f0(world.analyze(out, RATE))
    assert abs(semitones(measured_in, measured_out) - 4.0) <= 0.5


@pytest.mark.slow
def test_voice_build_save_load_round_trip(tmp_path, speech):
    import soundfile as sf

    files = []
    for i, shift in enumerate((0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5)):
        clip = pipeline.convert_audio(speech, RATE, pipeline.ConversionTarget(transform=VoiceTransform(pitch_semitones=shift)))
        path = tmp_path / f"take{i}.flac"
        sf.write(path, clip.audio, RATE)
        files.append(path)
    built = voice.build_voice("espeak", files, description="espeak-ng en-us")
    json_path = voice.save_voice(built, tmp_path / "espeak")
    loaded = voice.load_voice(json_path)
    assert loaded.name == "espeak"
    assert loaded.lf0_mean == pytest.approx(built.lf0_mean)
    for key, value in built.arrays.items():
        np.testing.assert_allclose(loaded.arrays[key], value, rtol=1e-6)
    document = json.loads(json_path.read_text())
    assert document["format"] == voice.FORMAT_NAME and document["provenance"]["files"] == len(files)
    # The arrays file is plain safetensors: no pickle anywhere.
    assert not (tmp_path / "espeak.voice.safetensors").read_bytes().startswith(b"\x80")


def test_damaged_voice_files_are_refused_with_a_reason(tmp_path):
    (tmp_path / "bad.voice.json").write_text('{"format": "something-else"}')
    with pytest.raises(voice.VoiceError, match="not a Waveform Studio voice"):
        voice.load_voice(tmp_path / "bad")
    (tmp_path / "v.voice.json").write_text(json.dumps({"format": voice.FORMAT_NAME, "format_version": 1}))
    (tmp_path / "v.voice.safetensors").write_bytes(b"\x80\x04garbage-pickle")
    with pytest.raises(voice.VoiceError, match="damaged voice arrays"):
        voice.load_voice(tmp_path / "v")
    with pytest.raises(voice.VoiceError, match="no such voice"):
        voice.load_voice(tmp_path / "missing")


def test_shipped_voices_load_and_differ():
    from pathlib import Path

    import studio

    folder = Path(studio.__file__).resolve().parent.parent / "resources" / "voices"
    ru = voice.load_voice(folder / "ru")
    allison = voice.load_voice(folder / "allison")
    assert 100 < ru.median_f0_hz < 160 and 160 < allison.median_f0_hz < 260
    assert ru.speaker_embedding is not None and allison.speaker_embedding is not None


def test_a_take_without_voiced_speech_says_so_and_gives_valid_json(tmp_path, speech):
    """A silent take (a muted microphone) has no pitch to shift or map: `studio convert` says so (in
    the JSON the medians are null, not NaN); a take with speech carries no such note, and a formant
    shift (which needs no pitch) none either."""
    import sys

    import soundfile as sf

    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(2 * RATE, np.float32), RATE)
    voiced = tmp_path / "speech.wav"
    sf.write(voiced, speech, RATE)

    def convert(path, *options):
        run = subprocess.run(
            [sys.executable, "-m", "studio", "convert", str(path), *options, "--out", str(tmp_path / "out.wav"), "--json"],
            capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))

    for options in (("--pitch", "3"), ("--to", "allison")):
        summary = convert(silence, *options)
        assert summary["f0_median_in_hz"] is None and summary["f0_median_out_hz"] is None
        assert any("no voiced speech" in n for n in summary["notes"]), summary["notes"]
    assert not any("no voiced speech" in n for n in convert(voiced, "--pitch", "3")["notes"])
    assert convert(silence, "--formant", "1.1")["notes"] == []
