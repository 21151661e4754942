"""The Recorder on the real server (default source = the monitor of the sink the Player plays into)."""

import os
import signal
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import soundfile as sf
from support.audio import dominant_frequency, tone, warm_up_output

from studio.engine.audio.devices import AudioDeviceError
from studio.engine.audio.files import AudioWriteError
from studio.engine.audio.player import Player
from studio.engine.audio.recorder import Recorder, RecorderState

pytestmark = pytest.mark.sound


@pytest.fixture
def player(pulse_server):
    warm_up_output()
    p = Player()
    yield p
    p.stop()


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_records_exact_length_with_levels_clip_and_recent(player, tmp_path):
    sr = 48000
    signal_ = np.concatenate([tone(1000, 1.0, sr, 0.5), tone(1000, 0.4, sr, 1.0)])
    path = tmp_path / "take.wav"
    rec = Recorder(path, max_seconds=1.6)
    assert rec.state == RecorderState.IDLE and rec.elapsed_s == 0.0
    rec.start()
    rec.start()  # idempotent while recording
    player.play_buffer(signal_, sr)
    assert wait_until(lambda: rec.level.peak_db > -7.0, 5)
    time.sleep(0.1)
    levels = rec.level
    assert levels.peak_db == pytest.approx(-6.0, abs=1.0) and levels.rms_db == pytest.approx(-9.0, abs=1.0)
    assert not levels.clipped
    recent = rec.recent(4800)
    assert recent.shape == (4800, 1)
    assert dominant_frequency(recent, sr) == pytest.approx(1000, abs=5)
    assert rec.wait(timeout=10)
    assert rec.level.clipped and rec.level.clip_count > 0  # the full-scale part
    assert rec.stop() == str(path)
    assert rec.stop() == str(path)  # idempotent
    assert rec.state == RecorderState.STOPPED and rec.last_error is None
    assert rec.frames_recorded == int(1.6 * sr) and rec.elapsed_s == pytest.approx(1.6)
    assert rec.overflows == 0
    info = sf.info(path)
    assert (info.frames, info.samplerate, info.channels, info.subtype) == (int(1.6 * sr), sr, 1, "PCM_16")
    with pytest.raises(RuntimeError, match="new one"):
        rec.start()


def test_flac_goes_through_a_crash_safe_partial_wav(player, tmp_path):
    path = tmp_path / "take.flac"
    partial = str(path) + ".partial.wav"
    rec = Recorder(path, channels=2, max_seconds=0.5).start()
    assert os.path.exists(partial)
    assert rec.wait(timeout=10)
    assert rec.stop() == str(path)
    assert not os.path.exists(partial)
    info = sf.info(path)
    assert (info.format, info.frames, info.channels) == ("FLAC", 24000, 2)


def test_bad_settings_raise_before_any_file_is_made(pulse_server, tmp_path):
    path = tmp_path / "x.wav"
    with pytest.raises(AudioDeviceError, match="64 channel"):
        Recorder(path, channels=64).start()
    assert not path.exists()
    with pytest.raises(AudioWriteError, match="does not exist"):
        Recorder(tmp_path / "no" / "folder" / "x.wav").start()
    with pytest.raises(ValueError, match="extension"):
        Recorder(tmp_path / "noext")
    with pytest.raises(ValueError):
        Recorder(path, channels=0)


def test_cli_record_for_seconds(player, tmp_path):
    path = tmp_path / "cli.wav"
    player.play_buffer(tone(1000, 2.0, 48000), 48000)
    out = subprocess.run(
        [sys.executable, "-m", "studio", "record", str(path), "--seconds", "0.7"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "recording" in out.stdout and "dB" in out.stdout and "saved" in out.stdout
    audio, sr = sf.read(path, dtype="float32")
    assert sr == 48000 and len(audio) == int(0.7 * sr)
    assert dominant_frequency(audio[sr // 10 :], sr) == pytest.approx(1000, abs=5)


def test_sigkill_loses_at_most_a_fraction_of_a_second(player, tmp_path):
    """`studio record` killed with SIGKILL mid-recording leaves a file that every reader opens,
    holding audio up to within a fraction of a second of the kill."""
    path = tmp_path / "killed.wav"
    player.play_buffer(tone(1000, 8.0, 48000), 48000)  # what the recording must contain
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "record", str(path), "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # printed once the input stream runs
        started = time.monotonic()
        assert first.startswith("recording"), first + proc.stderr.read()
        time.sleep(1.5)
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ran = killed - started
    info = sf.info(path)
    held = info.frames / info.samplerate
    print(f"killed after {ran:.3f} s; the file holds {held:.3f} s")
    assert ran - 0.5 <= held <= ran + 0.2, f"recorded {held:.2f} s of {ran:.2f} s before the kill"
    with wave.open(str(path)) as w:  # a strict reader: the RIFF header must hold the real length
        assert w.getnframes() == info.frames
    audio, sr = sf.read(path, dtype="float32")
    tail = audio[-int(0.3 * sr) :]
    assert dominant_frequency(tail, sr) == pytest.approx(1000, abs=5)
    assert np.abs(tail).max() > 0.3
