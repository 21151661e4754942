"""Audio file I/O through real files: round trips in every format, channel/rate handling, typed errors,
atomic writes, streamed info and block reading."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from studio.engine.audio import files
from studio.engine.audio.files import (
    AudioFileError,
    AudioFileNotFound,
    AudioWriteError,
    BadSampleRateError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
    TruncatedAudioError,
    UnsupportedCodecError,
)

SR = 22050


def tone(freq: float, seconds: float = 0.5, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo() -> np.ndarray:
    return np.stack([tone(440), tone(660, amp=0.25)], axis=1)


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    n = min(len(ref), len(test))
    ref, test = ref[:n], test[:n]
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - test) ** 2), 1e-20)))


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_lossless_round_trip_is_exact_to_16_bits(tmp_path, ext):
    x = stereo()
    path = tmp_path / f"a.{ext}"
    assert files.save(path, x, SR) == SR
    y, sr = files.load(path, mono=False)
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1.0 / 32768 + 1e-7


@pytest.mark.parametrize(
    "ext, fmt, subtype, rate_written, min_snr",
    [
        ("ogg", "OGG", "VORBIS", SR, 15.0),
        ("opus", "OGG", "OPUS", 24000, 10.0),  # Opus cannot store 22050 Hz: the next allowed rate
        ("mp3", "MP3", "MPEG_LAYER_III", SR, 10.0),
    ],
)
def test_lossy_formats_round_trip(tmp_path, ext, fmt, subtype, rate_written, min_snr):
    x = tone(440, seconds=1.0)
    path = tmp_path / f"a.{ext}"
    assert files.save(path, x, SR) == rate_written
    described = files.info(path)
    assert (described.format, described.subtype, described.sample_rate) == (fmt, subtype, rate_written)
    y, sr = files.load(path, sample_rate=SR)
    assert sr == SR and y.ndim == 1
    assert abs(len(y) - len(x)) <= 0.01 * len(x)
    assert dominant_hz(y, SR) == pytest.approx(440, abs=2)
    # Lossy codecs add delay; compare the best-aligned stretch.
    lag = int(np.argmax(np.correlate(y[:4000], x[:2000], mode="valid")))
    assert snr_db(x[2000:16000], y[lag + 2000 : lag + 16000]) > min_snr


def test_opus_at_16k_is_written_at_16k(tmp_path):
    assert files.save(tmp_path / "a.opus", tone(300, sr=16000), 16000) == 16000
    assert files.info(tmp_path / "a.opus").sample_rate == 16000


def test_format_and_subtype_arguments(tmp_path):
    path = tmp_path / "no_extension"
    files.save(path, tone(440), SR, format="flac", subtype="PCM_24")
    described = files.info(path)
    assert (described.format, described.subtype) == ("FLAC", "PCM_24")
    with pytest.raises(ValueError, match="format"):
        files.save(tmp_path / "a.xyz", tone(440), SR)
    with pytest.raises(UnsupportedCodecError, match="VORBIS"):
        files.save(tmp_path / "a.wav", tone(440), SR, subtype="VORBIS")


def test_float_wav_keeps_values_beyond_full_scale_but_int_formats_clip(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    files.save(tmp_path / "f.wav", x, SR, subtype="FLOAT")
    raw, _ = sf.read(tmp_path / "f.wav", dtype="float32")
    np.testing.assert_array_equal(raw, x)
    loaded, _ = files.load(tmp_path / "f.wav")
    np.testing.assert_array_equal(loaded, [0.0, 1.0, -1.0, 0.25])
    unclipped, _ = files.load(tmp_path / "f.wav", clip=False)
    np.testing.assert_array_equal(unclipped, x)
    files.save(tmp_path / "i.wav", x, SR)
    raw16, _ = sf.read(tmp_path / "i.wav", dtype="float32")
    assert raw16[1] == pytest.approx(1.0, abs=1e-4) and raw16[2] == -1.0  # clipped, not wrapped


# -------------------------------------------------------------------------- channels and rates
def test_channel_handling(tmp_path):
    st = stereo()
    files.save(tmp_path / "s.wav", st, SR, subtype="FLOAT")
    files.save(tmp_path / "m.wav", tone(440), SR, subtype="FLOAT")
    mono, _ = files.load(tmp_path / "s.wav")
    np.testing.assert_allclose(mono, st.mean(axis=1), atol=1e-7)
    kept, _ = files.load(tmp_path / "s.wav", mono=False)
    assert kept.shape == st.shape
    dup, _ = files.load(tmp_path / "m.wav", channels=2)
    assert dup.shape == (len(tone(440)), 2)
    np.testing.assert_array_equal(dup[:, 0], dup[:, 1])
    one, _ = files.load(tmp_path / "s.wav", mono=False, channels=1)  # channels wins over mono
    assert one.ndim == 1
    native_mono, _ = files.load(tmp_path / "m.wav", mono=False)
    assert native_mono.shape == (len(tone(440)), 1)


def test_load_resamples_with_soxr(tmp_path):
    x = tone(1000, seconds=1.0, sr=48000)
    files.save(tmp_path / "a.wav", x, 48000, subtype="FLOAT")
    y, sr = files.load(tmp_path / "a.wav", sample_rate=16000)
    assert sr == 16000 and len(y) == 16000
    assert dominant_hz(y, 16000) == pytest.approx(1000, abs=1.5)
    np.testing.assert_allclose(np.sqrt(np.mean(y[1000:-1000] ** 2)), 0.5 / np.sqrt(2), rtol=0.01)


# -------------------------------------------------------------------------------------- writing
def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "take.wav"
    files.save(path, tone(440), SR)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        files.save(path, np.full(100, np.nan, np.float32), SR)
    assert path.read_bytes() == before
    files.save(path, tone(880), SR)
    y, _ = files.load(path)
    assert dominant_hz(y, SR) == pytest.approx(880, abs=3)
    assert sorted(os.listdir(tmp_path)) == ["take.wav"]


def test_save_keeps_mode_of_existing_file_and_reports_missing_folder(tmp_path):
    path = tmp_path / "a.wav"
    files.save(path, tone(440), SR)
    os.chmod(path, 0o640)
    files.save(path, tone(440), SR)
    assert os.stat(path).st_mode & 0o777 == 0o640
    with pytest.raises(AudioWriteError, match="does not exist"):
        files.save(tmp_path / "missing" / "a.wav", tone(440), SR)


def test_save_refuses_too_many_channels_for_mp3(tmp_path):
    with pytest.raises(UnsupportedCodecError, match="at most 2 channels"):
        files.save(tmp_path / "a.mp3", np.zeros((1000, 3), np.float32), SR)


# ---------------------------------------------------------------------------------------- errors
def assert_good_message(exc: AudioFileError, path) -> None:
    message = str(exc)
    assert "\n" not in message
    assert os.fspath(path) in message
    assert exc.path == os.fspath(path)


def test_missing_folder_and_unreadable_paths(tmp_path):
    with pytest.raises(AudioFileNotFound) as info:
        files.load(tmp_path / "nope.wav")
    assert_good_message(info.value, tmp_path / "nope.wav")
    with pytest.raises(AudioFileNotFound, match="folder"):
        files.load(tmp_path)


def test_empty_and_not_audio_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(EmptyAudioError) as info:
        files.load(tmp_path / "empty.wav")
    assert_good_message(info.value, tmp_path / "empty.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(EmptyAudioError):
        files.load(tmp_path / "zero.wav")
    (tmp_path / "notes.wav").write_text("these are not samples\n" * 20)
    with pytest.raises(NotAudioError) as info:
        files.load(tmp_path / "notes.wav")
    assert_good_message(info.value, tmp_path / "notes.wav")
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(UnsupportedCodecError, match="ffmpeg"):
        files.load(tmp_path / "song.m4a")


def test_wavex_with_unimplemented_codec_is_unsupported(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[20:22] = struct.pack("<H", 0xFFFE)  # WAVE_FORMAT_EXTENSIBLE without its extension
    path.write_bytes(bytes(data))
    with pytest.raises((UnsupportedCodecError, CorruptAudioError)) as info:
        files.load(path)
    assert_good_message(info.value, path)


@pytest.mark.parametrize("rate", [0, 100, 999, 800_000, 2_000_000, 2**31, 4_000_000_000])
def test_absurd_sample_rate_in_header(tmp_path, rate):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert struct.unpack("<I", data[24:28])[0] == SR
    data[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(data))
    with pytest.raises(BadSampleRateError) as info:
        files.load(path)
    assert_good_message(info.value, path)


def test_truncated_wav_is_reported_and_can_be_loaded_on_request(tmp_path):
    path = tmp_path / "a.wav"
    x = tone(440, seconds=1.0)
    files.save(path, x, SR)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 5000])
    with pytest.raises(TruncatedAudioError) as info:
        files.load(path)
    assert (info.value.frames_found, info.value.frames_declared) == (5000, len(x))
    assert_good_message(info.value, path)
    assert isinstance(info.value, CorruptAudioError)
    part, _ = files.load(path, allow_truncated=True)
    assert len(part) == 5000
    np.testing.assert_allclose(part, x[:5000], atol=1e-4)
    with pytest.raises(TruncatedAudioError):
        files.info(path)


@pytest.mark.parametrize("ext", ["ogg", "opus", "mp3", "flac"])
def test_cut_short_compressed_files_are_refused(tmp_path, ext):
    path = tmp_path / f"a.{ext}"
    files.save(path, tone(440, seconds=2.0, sr=16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(CorruptAudioError) as info:  # TruncatedAudioError is one
        files.load(path)
    assert_good_message(info.value, path)


def test_damaged_float_samples_load_as_finite_full_scale(tmp_path):
    x = tone(440)
    x[[10, 20, 30, 40]] = [np.nan, np.inf, 1e30, -3.0]
    sf.write(tmp_path / "f.wav", x, SR, subtype="FLOAT")
    y, _ = files.load(tmp_path / "f.wav")
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    np.testing.assert_array_equal(y[[10, 20, 30, 40]], [0.0, 0.0, 1.0, -1.0])
    assert files.info(tmp_path / "f.wav").nonfinite_samples == 2


# ----------------------------------------------------------------------------------- info, blocks
def test_info_measures_levels_by_streaming(tmp_path):
    x = np.stack([tone(440, seconds=2.0), tone(440, seconds=2.0, amp=0.25)], axis=1)
    files.save(tmp_path / "a.flac", x, SR, subtype="PCM_24")
    described = files.info(tmp_path / "a.flac", block_frames=1000)
    assert (described.format, described.subtype, described.channels) == ("FLAC", "PCM_24", 2)
    assert described.frames == len(x) and described.duration_s == pytest.approx(2.0)
    assert described.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.01)
    expected_rms = np.sqrt((0.5**2 + 0.25**2) / 4)  # two sines, averaged over both channels
    assert described.rms_dbfs == pytest.approx(20 * np.log10(expected_rms), abs=0.01)
    header_only = files.info(tmp_path / "a.flac", stats=False)
    assert header_only.frames == len(x) and header_only.peak_dbfs is None


def test_info_of_silence_is_minus_infinity_and_json_null(tmp_path):
    files.save(tmp_path / "s.wav", np.zeros(1000, np.float32), SR)
    described = files.info(tmp_path / "s.wav")
    assert described.peak_dbfs == float("-inf") and described.rms_dbfs == float("-inf")
    assert described.to_dict()["peak_dbfs"] is None


def test_iter_blocks_streams_the_same_samples_as_load(tmp_path):
    x = stereo()
    files.save(tmp_path / "a.flac", x, SR)
    blocks = list(files.iter_blocks(tmp_path / "a.flac", 1000, mono=False))
    assert all(b.shape[0] <= 1000 and b.shape[1] == 2 and b.dtype == np.float32 for b in blocks)
    assert len(blocks) == -(-len(x) // 1000)
    whole, _ = files.load(tmp_path / "a.flac", mono=False)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    mono_blocks = list(files.iter_blocks(tmp_path / "a.flac", 4096))
    assert mono_blocks[0].ndim == 1
    with pytest.raises(AudioFileNotFound):
        next(files.iter_blocks(tmp_path / "missing.flac", 1000))
