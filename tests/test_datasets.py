"""Training-data preparation: trimming, loudness, quantisation, FLAC, manifests, the festvox-ru and music
recipes (on a stand-in voice folder of real espeak-ng speech, and on the real packages when installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio.cli import main
from studio.engine.audio import files
from studio.engine.audio.resample import resample
from studio.engine.datasets import festvox, manifest, processing
from studio.engine.datasets.common import SourceMissingError
from studio.engine.datasets.writer import write_flac
from studio.engine.evaluation.copysynth import find_audio

SR = 16000


@pytest.fixture(scope="module")
def utterance(tmp_path_factory) -> np.ndarray:
    """About 2 s of real speech (espeak-ng) at 16 kHz, peak −6 dBFS, no silence at the ends."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    path = tmp_path_factory.mktemp("speech") / "s.wav"
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(path), "Seven silver swans swam south."],
                   check=True, capture_output=True, timeout=30)
    audio, sr = files.load(path)
    audio = processing.trim(resample(audio, sr, SR), SR, margin_seconds=0.0)
    return (audio / np.max(np.abs(audio)) * 0.5).astype(np.float32)


def _pad(x: np.ndarray, seconds: float) -> np.ndarray:
    z = np.zeros(int(seconds * SR), np.float32)
    return np.concatenate([z, x, z])


@pytest.fixture(scope="module")
def voice(tmp_path_factory, utterance) -> Path:
    """A folder laid out like Debian's festvox-ru voice: wav/ru_NNNN.wav and etc/txt.done.data."""
    root = tmp_path_factory.mktemp("voice")
    (root / "wav").mkdir()
    (root / "etc").mkdir()
    ids = ["ru_0001", "ru_0002", "ru_0003", "ru_0004", "ru_0005", "ru_0810", "ru_0829", "ru_0840", "ru_0900"]
    for n, uid in enumerate(ids):
        gain = 0.25 if uid == "ru_0002" else 1.0  # one quiet take (−12 dB)
        sf.write(root / "wav" / f"{uid}.wav", _pad(utterance * gain, 0.5 + 0.05 * n), SR, subtype="PCM_16")
    (root / "etc" / "txt.done.data").write_text(
        "\n".join(f'( {uid} "Текст номер {i}." )' for i, uid in enumerate(ids)) + "\n", encoding="utf-8"
    )
    return root


# -- processing --------------------------------------------------------------------------------------
def test_trim_keeps_the_margin_around_the_sound(utterance):
    padded = _pad(utterance, 0.7)
    trimmed = processing.trim(padded, SR, margin_seconds=0.1)
    assert abs(trimmed.size - (utterance.size + 2 * 0.1 * SR)) <= 2 * SR * processing.FRAME_SECONDS
    assert processing.trim(np.zeros(0, np.float32), SR).size == 0


def test_normalise_sets_the_active_level_and_limits_peaks(utterance):
    quiet = utterance * 0.05
    out, gain = processing.normalise_loudness(quiet, SR, target_dbfs=-20.0, peak_dbfs=-1.0)
    assert processing.active_level_dbfs(out, SR) == pytest.approx(-20.0, abs=0.05)
    assert gain > 20.0
    loud, _ = processing.normalise_loudness(quiet, SR, target_dbfs=0.0, peak_dbfs=-3.0)
    assert 20 * np.log10(np.max(np.abs(loud))) == pytest.approx(-3.0, abs=0.01)
    silent, g = processing.normalise_loudness(np.zeros(100, np.float32), SR)
    assert g == 0.0 and not silent.any()


def test_quantised_flac_keeps_zero_low_bits_and_is_smaller(utterance, tmp_path):
    x = _pad(utterance, 0.2)
    q = processing.quantise(x, 14)
    assert np.max(np.abs(q - x)) <= 2.0 ** -14 + 1e-9
    size16 = write_flac(tmp_path / "a16.flac", x, SR)
    size14 = write_flac(tmp_path / "a14.flac", q, SR)
    back, sr = sf.read(tmp_path / "a14.flac", dtype="int16")
    assert sr == SR and np.all(back % 4 == 0)
    assert np.array_equal(back.astype(np.float32) / 32768.0, q)
    assert size14 < 0.9 * size16
    with pytest.raises(ValueError):
        processing.quantise(x, 20)


# -- festvox-ru ------------------------------------------------------------------------------------
def test_festvox_splits_are_fixed():
    assert festvox.split_of("ru_0840") == "test"
    assert festvox.split_of("ru_0829") == "validation"
    assert festvox.split_of("ru_0801") == "reserve" and festvox.split_of("ru_0844") == "test"
    assert festvox.split_of("ru_0800") == "train" and festvox.split_of("ru_0845") == "train"
    assert len(festvox.TEST_IDS) == 6 and not set(festvox.TEST_IDS) & set(festvox.VALIDATION_IDS)


def test_prepare_festvox_writes_flac_and_a_manifest(voice, tmp_path):
    out = tmp_path / "set"
    report = festvox.prepare_festvox_ru(out, source=voice, budget_mib=None)
    m = manifest.read_manifest(out)
    assert m.sample_rate == SR and m.name == "festvox-ru"
    assert [i.id for i in m.split("test")] == ["ru_0840"]
    assert [i.id for i in m.split("validation")] == ["ru_0829"]
    assert [i.id for i in m.split("reserve")] == ["ru_0810"]
    assert [i.id for i in m.split("train")] == ["ru_0001", "ru_0002", "ru_0003", "ru_0004", "ru_0005", "ru_0900"]
    assert m.split("test")[0].text == "Текст номер 7."
    levels = []
    for item in m.items:
        audio, sr = files.load(item.path)
        assert sr == SR and audio.size == item.samples
        assert item.seconds < 2 * 0.5 + np.ceil(2.0)  # the half-second pads are trimmed away
        levels.append(processing.active_level_dbfs(audio, SR))
    assert max(levels) - min(levels) < 0.5  # the quiet take was brought up with the others
    assert report.bytes == manifest.read_manifest(out).document["bytes"]
    assert find_audio(out) == [("ru_0840", m.split("test")[0].path)]
    # Preparing again into the same folder replaces the set; a foreign non-empty folder is refused.
    festvox.prepare_festvox_ru(out, source=voice, rate=22050, budget_mib=None)
    assert manifest.read_manifest(out).sample_rate == 22050
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(manifest.DatasetError, match="not empty"):
        festvox.prepare_festvox_ru(tmp_path / "foreign", source=voice)


def test_the_budget_drops_training_audio_but_never_held_out(voice, tmp_path):
    out = tmp_path / "small"
    report = festvox.prepare_festvox_ru(out, source=voice, budget_mib=0.45)
    m = manifest.read_manifest(out)
    assert {i.split for i in m.items} >= {"test", "validation", "reserve"}
    assert 0 < report.left_out < 6 and len(m.split("train")) == 6 - report.left_out
    audio_bytes = sum(i.path.stat().st_size for i in m.items)
    assert audio_bytes <= 0.45 * 1024 * 1024


def test_missing_voice_names_the_apt_command(tmp_path, capsys):
    with pytest.raises(SourceMissingError, match="apt-get install --no-install-recommends festvox-ru"):
        festvox.find_source(tmp_path)
    assert main(["data", "prepare", "festvox-ru", "--out", str(tmp_path / "o"), "--source", str(tmp_path)]) == 2
    assert "festvox-ru" in capsys.readouterr().err


def test_cli_prepares_festvox(voice, tmp_path, capsys):
    code = main(["data", "prepare", "festvox-ru", "--out", str(tmp_path / "cli"), "--source", str(voice),
                 "--bits", "16", "--budget-mib", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test" in out and "MiB" in out
    doc = json.loads((tmp_path / "cli" / "manifest.json").read_text(encoding="utf-8"))
    assert doc["preparation"]["bits"] == 16 and doc["summary"]["train"]["items"] == 6


def test_manifest_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(manifest.DatasetError, match="no prepared data set"):
        manifest.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(manifest.DatasetError, match="not a Waveform Studio"):
        manifest.read_manifest(tmp_path)
    manifest.write_manifest(tmp_path, {"name": "x", "sample_rate": 16000, "items": [
        {"id": "a", "path": "audio/a.flac", "split": "train", "samples": 1, "seconds": 0.1}]})
    with pytest.raises(manifest.DatasetError, match="a.flac is missing"):
        manifest.read_manifest(tmp_path)


@pytest.mark.skipif(not (festvox.DEFAULT_SOURCE / "wav").is_dir(), reason="festvox-ru not installed (scripts/setup-data)")
def test_real_festvox_held_out_set(tmp_path):
    festvox.prepare_festvox_ru(tmp_path / "fv", max_train_minutes=0.2)
    m = manifest.read_manifest(tmp_path / "fv")
    assert [i.id for i in m.split("test")] == list(festvox.TEST_IDS)
    assert len(m.split("validation")) == 6 and len(m.split("reserve")) == 20
    assert 50 < m.seconds("test") < 56  # 55.5 s before trimming
    assert all(i.text for i in m.split("test"))  # transcripts come along


# -- music -----------------------------------------------------------------------------------------
def _music_available() -> bool:
    from studio.engine.datasets import music

    try:
        music.find_fluidsynth(), music.find_soundfont(), music._music21()
    except SourceMissingError:
        return False
    return True


@pytest.mark.skipif(not _music_available(), reason="fluidsynth, a GM soundfont or music21 missing (scripts/setup-data)")
def test_music_renders_corpus_pieces(tmp_path):
    from studio.engine.datasets import music

    report = music.prepare_music(tmp_path / "mus", minutes=0.4, programs=(0,))
    m = manifest.read_manifest(tmp_path / "mus")
    assert m.document["kind"] == "music" and m.sample_rate == 16000
    assert 0.4 * 60 <= m.seconds() < 0.4 * 60 + 120 and report.bytes > 0
    audio, _ = files.load(m.items[0].path)
    assert processing.active_level_dbfs(audio, 16000) == pytest.approx(-20.0, abs=1.5)
    spectrum = np.abs(np.fft.rfft(audio[: 16000 * 4]))
    peak_hz = np.argmax(spectrum) * 16000 / (2 * (spectrum.size - 1))
    assert 60 < peak_hz < 2000  # notes of a chorale, not noise or silence


def test_music_options_are_checked(tmp_path):
    from studio.engine.datasets import music

    assert music.split_of_index(9) == "test" and music.split_of_index(14) == "validation"
    assert music.split_of_index(0) == "train"
    with pytest.raises(ValueError, match="programs"):
        music.prepare_music(tmp_path / "x", programs=(200,))
    with pytest.raises(SourceMissingError):
        music.find_soundfont(tmp_path / "none.sf2")
