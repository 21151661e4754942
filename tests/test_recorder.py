"""The Recorder on the real server (default source = the monitor of the sink the Player plays into)."""

import json
import os
import signal
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import soundfile as sf
from support import live_audio
from support.audio import dominant_frequency, tone
from support.live_audio import wait_until

from studio.engine.audio.devices import AudioDeviceError
from studio.engine.audio.files import AudioWriteError
from studio.engine.audio.recorder import Recorder, RecorderState

pytestmark = pytest.mark.sound
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
player = live_audio.player  # the fixture


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
    seen = rec.frames_recorded  # the tone has begun: wait for 0.1 s more of it (audio, not wall time)
    assert wait_until(lambda: rec.frames_recorded >= seen + sr // 10, 5)
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
    # A stream that died and was reopened under load is a gap (in the file as silence), not a failure.
    assert rec.overflows == len(rec.gaps), rec.gaps
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


RECOVERY_SCRIPT = """
import json, sys, time
import numpy as np, soundfile as sf
sys.path.insert(0, {tests!r})
from support import pulse
from support.audio import tone
from support.live_audio import wait_until
server = pulse.start()
server.wait_warm()
result = {{}}
try:
    from studio.engine.audio.recorder import Recorder
    tone_path = {tone_path!r}
    sf.write(tone_path, tone(1000, 1.0, 48000), 48000)

    # 1. The server dies under a running Recorder and comes back: the recording goes on.
    rec = Recorder({path!r}, recover_timeout_s=15.0)
    started = time.monotonic()
    rec.start()
    assert wait_until(lambda: rec.frames_recorded > 24000, 10), "no audio before the kill"
    killed = time.monotonic()
    server.kill()
    time.sleep(1.0)
    server.restart()
    back = time.monotonic()
    result["recovered"] = wait_until(lambda: len(rec.gaps) > 0, 15)
    result["state_while_recovering"] = str(rec.state)
    server.wait_warm()
    import subprocess
    subprocess.run(["paplay", "-d", "test_sink", tone_path], check=True, timeout=30)
    time.sleep(0.3)
    rec.stop()
    stopped = time.monotonic()
    result.update(
        down_s=back - killed, wall_s=stopped - started, frames=rec.frames_recorded,
        gaps=[[g.start_s, g.duration_s, g.reason] for g in rec.gaps], overflows=rec.overflows,
        dropped=rec.dropped_frames, error=repr(rec.last_error),
    )

    # 2. The server dies and stays away: a clear error once reopening has failed for recover_timeout_s.
    rec2 = Recorder({path2!r}, recover_timeout_s=1.0).start()
    assert wait_until(lambda: rec2.frames_recorded > 4800, 10), "no audio before the second kill"
    server.kill()
    result["gave_up"] = wait_until(lambda: str(rec2.state) == "stopped", 15)
    result["error2"] = f"{{type(rec2.last_error).__name__}}: {{rec2.last_error}}"
    result["frames2"] = rec2.frames_recorded
finally:
    server.stop()
print("RESULT", json.dumps(result), flush=True)
"""


@pytest.mark.slow
def test_recovers_when_the_sound_server_dies_and_comes_back(tmp_path):
    """A second private server is SIGKILLed under a running Recorder (in a subprocess), which gives
    exactly the failure seen under load (``PaAlsaStream_WaitForFrames failed``), then restarted:
    the Recorder reopens its stream, writes the lost span as silence, records on; killed for good,
    it ends with a clear error."""
    path, path2 = tmp_path / "recovered.wav", tmp_path / "gave_up.wav"
    script = RECOVERY_SCRIPT.format(
        tests=TESTS_DIR, tone_path=str(tmp_path / "tone.wav"), path=str(path), path2=str(path2)
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout + out.stderr
    r = json.loads(lines[0][len("RESULT ") :])
    print(r)
    assert r["recovered"] and r["state_while_recovering"] == "recording" and r["error"] == "None"
    assert len(r["gaps"]) == 1 and r["overflows"] == 1
    start_s, gap_s, reason = r["gaps"][0]
    assert reason == "stopped"
    # The device lost at least the time the server was down, and not much more than that plus the
    # restart (a fresh server's first stream takes up to ~2 s) and the reopen backoff.
    assert r["down_s"] - 0.1 <= gap_s <= r["down_s"] + 6.0, r
    assert r["dropped"] == round(gap_s * 48000)
    audio, sr = sf.read(path, dtype="float32")
    assert len(audio) == r["frames"]
    # The timeline is honest: the file is as long as the recording took, gap included (without the
    # silence it would be short by the whole gap; the margin is for stream latency at start and stop).
    assert abs(len(audio) / sr - r["wall_s"]) < 1.0, (len(audio) / sr, r["wall_s"])
    gap = audio[int(round(start_s * sr)) : int(round((start_s + gap_s) * sr))]
    assert len(gap) >= int(gap_s * sr) - 1 and not np.any(gap)  # written as digital silence
    after = audio[int(round((start_s + gap_s) * sr)) :]
    loud = np.flatnonzero(np.abs(after) > 0.1)
    assert loud.size > 0.8 * sr, "the tone played after the server came back is missing"
    assert dominant_frequency(after[loud[0] : loud[0] + sr // 2], sr) == pytest.approx(1000, abs=5)
    # Killed for good: the recording ends with an error that says what happened; the file is kept.
    assert r["gave_up"], r
    assert r["error2"].startswith("AudioDeviceError") and "could not be reopened" in r["error2"], r["error2"]
    assert "saved in" in r["error2"]
    assert sf.info(path2).frames == r["frames2"] > 0


class _StallingFile:
    """The real SoundFile, except that one ``write`` (after ``after_frames``) blocks for ``stall_s``:
    a disk that stalls, the one thing this test has to stand in for."""

    def __init__(self, real, after_frames: int, stall_s: float) -> None:
        self._real, self._after, self._stall_s, self._written, self.stalled = real, after_frames, stall_s, 0, False

    def write(self, data) -> None:
        if not self.stalled and self._written >= self._after:
            self.stalled = True
            time.sleep(self._stall_s)
        self._real.write(data)
        self._written += len(data)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_a_stalled_writer_leaves_silence_where_the_ring_overflowed(player, tmp_path, monkeypatch):
    """The ring (0.25 s) overflows while the disk stalls for 0.8 s: the dropped frames are in the file as
    silence at the point they were lost, so what follows keeps its wall-clock position."""
    sr = 48000
    path = tmp_path / "stalled.wav"
    rec = Recorder(path, max_seconds=2.5, ring_s=0.25)
    real_open = Recorder._open_file
    stalling: list[_StallingFile] = []

    def open_stalling(self, rate):
        stalling.append(_StallingFile(real_open(self, rate), after_frames=int(0.5 * sr), stall_s=0.8))
        return stalling[0]

    monkeypatch.setattr(Recorder, "_open_file", open_stalling)
    rec.start()
    player.play_buffer(tone(1000, 3.0, sr, 0.5), sr)
    assert rec.wait(timeout=15)
    rec.stop()
    assert stalling and stalling[0].stalled and rec.last_error is None
    ring_gaps = [g for g in rec.gaps if "ring full" in g.reason]
    assert len(ring_gaps) >= 1, rec.gaps
    lost = sum(g.duration_s for g in ring_gaps)
    assert 0.3 <= lost <= 0.8, f"the stall minus the ring's 0.25 s was lost, got {lost:.3f} s"
    assert rec.dropped_frames == pytest.approx(lost * sr, abs=2) and rec.overflows == len(rec.gaps)
    audio, got_sr = sf.read(path, dtype="float32")
    assert got_sr == sr and audio.shape[0] == int(2.5 * sr)
    for gap in ring_gaps:
        a, b = int(round(gap.start_s * sr)), int(round((gap.start_s + gap.duration_s) * sr))
        assert np.all(audio[a:b] == 0.0), "the lost span is silence"
        before, after = audio[a - 4800 : a], audio[b : b + 4800]
        if before.size == 4800 and after.size == 4800 and np.abs(after).max() > 0.1:
            assert dominant_frequency(after, sr) == pytest.approx(1000, abs=5), "the tone goes on after it"
