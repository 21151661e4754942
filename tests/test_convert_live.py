"""Live conversion through the real PulseAudio server: mic_sink.monitor → converter → test_sink.

The latency is measured, not estimated: a probe process plays known bursts (a 140 Hz buzz) into
``mic_sink`` and records ``test_sink.monitor`` in one full-duplex stream (one clock), then finds the
bursts in the recording by envelope matching; its own round trip through a plain loopback, measured
before and after the session, is subtracted (each run's own device round trip taken out first, see
``system_latency_ms``). The probe runs three times through one session and the median is asserted:
the converter's latency is fixed within a session, one probe measurement now and then is not. The
recording is also checked for the pitch shift the converter was asked for.

On a loaded machine the probe's own stream can glitch (then it no longer shares one clock with what
it recorded, and its delay means nothing): such a run is measured once more, and the bound is
asserted on a clean run only. The converter's counters are never retried: zero underruns and zero
device underflows/overflows over the whole session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs the voice extra (pyworld)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIFT_SEMITONES = 4.0
LATENCY_BOUND_MS = 150.0  # the bound; measured 115–125 ms here on a loaded 2-core machine
# Probe runs through one converter session. The converter's latency is fixed for the session (its
# ring is primed once; the stats show any drop), but one probe measurement carries PortAudio's
# estimate of the probe's own round trip, which has been off by 50 ms and more now and then (two CI
# runs measured 183 ms through a converter whose runs otherwise measure 129–136 ms): the median of
# three measurements of the same latency is what is asserted, and a real regression moves all three
# (as many runs as `eval-convert --live` takes).
from studio.engine.convert.live_eval import THROUGH_RUNS  # noqa: E402


def probe(seconds: float, sink: str, source: str, save_to: str | None = None) -> dict:
    """One probe measurement (the probe itself tries up to 3 streams until one runs clean)."""
    env = dict(os.environ, PULSE_SINK=sink, PULSE_SOURCE=source)
    command = [sys.executable, "-m", "studio.engine.convert.latency_probe", str(seconds)] + ([save_to] if save_to else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def clean_probe(seconds: float, sink: str, source: str, save_to: str | None = None) -> dict:
    """A probe measurement, taken once more when the probe's own stream glitched in every attempt."""
    result = probe(seconds, sink, source, save_to)
    if not result["clean"]:
        print(f"probe {sink} → {source} was not clean, measuring again: {result}")
        result = probe(seconds, sink, source, save_to)
    return result


@pytest.fixture
def mic_sink_reader(pulse_server):
    """A low-latency reader on ``mic_sink.monitor`` for the test's duration.

    A null sink that no low-latency stream listens to renders in 2-second blocks (PulseAudio's
    null-sink default): streams on it then start ~1.4 s late and stall ~2 s at random. The session's
    server already keeps such a reader on ``test_sink.monitor``.
    """
    reader = subprocess.Popen(
        ["parec", "-d", "mic_sink.monitor", "--latency-msec=20", "--raw"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield reader
    finally:
        reader.terminate()
        reader.wait(timeout=5)


def voiced_median_f0(path: str) -> float:
    import soundfile

    from studio.engine.audio.resample import resample
    from studio.engine.convert.world import analyze

    audio, rate = soundfile.read(path, dtype="float32")
    features = analyze(resample(audio, rate, 16000), 16000)
    loud = features.voiced & (np.log(features.sp.sum(axis=1) + 1e-12) > np.log(features.sp.sum(axis=1).max()) - 9)
    return float(np.median(features.f0[loud]))


def live_session(pulse_server, recording: str) -> tuple:
    """Convert +4 st live while the probe plays through it ``THROUGH_RUNS`` times; (stats, the
    through-probe runs, machine pauses). The first run's recording is saved to ``recording``."""
    from studio.engine.convert import ConversionTarget, VoiceTransform
    from studio.engine.convert.live import LiveConverter, LiveSettings
    from studio.engine.convert.pause_monitor import PauseMonitor

    pulse_server.use_sources("test_sink", "mic_sink.monitor")
    monitor = PauseMonitor().start()
    try:
        target = ConversionTarget(transform=VoiceTransform(pitch_semitones=SHIFT_SEMITONES))
        converter = LiveConverter(LiveSettings(target=target))
        converter.start()
        try:
            through = [clean_probe(3.0, "mic_sink", "test_sink.monitor", save_to=recording if run == 0 else None)
                       for run in range(THROUGH_RUNS)]
            stats = converter.run_for(0.2)
        finally:
            converter.stop()
    finally:
        pauses = monitor.stop()
        pulse_server.use_sources("test_sink", "test_sink.monitor")
    return stats, through, pauses


def glitched(stats) -> bool:
    return bool(stats.underruns or stats.input_overflows or stats.device_underflows or stats.device_input_overflows)


@pytest.mark.sound
@pytest.mark.slow
def test_live_pitch_shift_runs_without_underruns_and_measures_latency(pulse_server, mic_sink_reader, tmp_path):
    """Zero underruns of any kind and a measured latency ≤ 150 ms.

    A session runs once more only when it glitched while the machine itself stopped longer than the
    live path's buffers are built for (``PAUSE_TOLERANCE_MS``, seen by a separate witness process):
    then the run says nothing about the converter. The second session must be clean.
    """
    from studio.engine.convert.latency_probe import PROBE_F0_HZ, system_latency_ms
    from studio.engine.convert.live import PAUSE_TOLERANCE_MS

    loopback = clean_probe(2.0, "mic_sink", "mic_sink.monitor")
    assert loopback["clean"] and loopback["correlation"] > 0.9, loopback
    recording = str(tmp_path / "through.wav")
    stats, through, pauses = live_session(pulse_server, recording)
    if glitched(stats) and (pauses["longest_ms"] or 0) > PAUSE_TOLERANCE_MS:
        print(f"the machine paused {pauses['longest_ms']} ms during the session ({stats}); running it again")
        stats, through, pauses = live_session(pulse_server, recording)
    after = clean_probe(2.0, "mic_sink", "mic_sink.monitor")
    assert after["clean"] and after["correlation"] > 0.9, after
    latencies = [system_latency_ms(run, loopback, after) for run in through]
    latency_ms = float(np.median(latencies))
    print(f"live: measured latency {latency_ms:.0f} ms, the median of {', '.join(f'{v:.0f}' for v in latencies)} "
          f"(engine estimate {stats.latency_ms:.0f} ms; against the loopback before / after alone "
          f"{', '.join(f'{system_latency_ms(run, loopback):.0f} / {system_latency_ms(run, after):.0f}' for run in through)} ms), {stats}")
    print(f"probe through {through}\nprobe loopbacks {loopback} / {after}\nmachine pauses {pauses}")
    assert all(run["clean"] for run in through), f"the probe's own stream glitched in every attempt: {through}"
    assert all(run["correlation"] > 0.8 for run in through), f"the probe bursts did not come back through the converter: {through}"
    assert stats.hops > 100 and stats.error is None
    assert stats.underruns == 0 and stats.underrun_frames == 0 and stats.input_overflows == 0, (stats, pauses)
    assert stats.device_underflows == 0 and stats.device_input_overflows == 0, (stats, pauses)
    assert 0 < latency_ms <= LATENCY_BOUND_MS, (latency_ms, through, loopback, after)
    shifted = 12 * np.log2(voiced_median_f0(recording) / PROBE_F0_HZ)
    assert abs(shifted - SHIFT_SEMITONES) < 0.3, f"the output is {shifted:+.2f} semitones from the probe"


def test_a_converter_runs_once_and_a_failed_start_leaves_nothing_open(pulse_server):
    from studio.engine.audio.devices import AudioDeviceError
    from studio.engine.convert.live import LiveConverter, LiveSettings

    converter = LiveConverter(LiveSettings()).start()
    converter.stop()
    with pytest.raises(RuntimeError, match="already run"):
        converter.start()
    broken = LiveConverter(LiveSettings(device_block=0, output_latency="no such latency"))
    with pytest.raises(AudioDeviceError, match="cannot open"):
        broken.start()
    assert getattr(broken, "_in_stream", None) is None and broken._stream is None and broken._worker is None


@pytest.mark.sound
def test_a_stalled_process_shows_as_device_underflows_and_a_long_callback_pause(pulse_server):
    """Hold the GIL for 0.4 s (a C call through ctypes.PyDLL keeps it): no callback can run, the
    42 ms output buffer runs dry, and the converter must say so (it is not a converter underrun)."""
    import ctypes

    from studio.engine.convert.live import LiveConverter, LiveSettings

    try:
        usleep = ctypes.PyDLL(None).usleep
    except (OSError, AttributeError):
        pytest.skip("no usleep in this C library")
    converter = LiveConverter(LiveSettings()).start()
    try:
        converter.run_for(1.0)
        before = converter.stats()
        usleep(400_000)
        stats = converter.run_for(1.0)
    finally:
        converter.stop()
    assert stats.device_underflows > before.device_underflows, stats
    assert stats.longest_callback_gap_ms >= 300, stats
    assert stats.warning and stats.error is None, stats


def test_a_wrong_portaudio_estimate_is_never_subtracted():
    """Pure arithmetic: estimates within reason correct each run; a loopback share far below zero (seen
    in CI: 112 ms measured, 362 ms estimated) would inflate the result, so it is not used; a wrong
    estimate of the through run itself leaves only the plain difference of the round trips."""
    from studio.engine.convert.latency_probe import system_latency_ms

    through = {"round_trip_ms": 190.0, "device_round_trip_ms": 60.0}
    assert system_latency_ms(through, {"round_trip_ms": 62.0, "device_round_trip_ms": 58.0}) == 126.0
    wrong = {"round_trip_ms": 112.0, "device_round_trip_ms": 362.0}
    assert system_latency_ms({"round_trip_ms": 256.0, "device_round_trip_ms": 119.7}, wrong) == pytest.approx(136.3)
    assert system_latency_ms({"round_trip_ms": 256.0, "device_round_trip_ms": 362.0}, wrong) == 144.0


def test_loopback_runs_before_and_after_a_session_are_averaged():
    """Pure arithmetic: the server's share is the mean of the bracketing loopback runs' shares; a run
    whose estimate is wrong (seen in CI and here, right after a session) is left out; with none left the
    share is zero, and only a wrong estimate of the through run itself falls back to the plain difference."""
    from studio.engine.convert.latency_probe import system_latency_ms

    through = {"round_trip_ms": 190.0, "device_round_trip_ms": 60.0}
    before = {"round_trip_ms": 62.0, "device_round_trip_ms": 58.0}
    after = {"round_trip_ms": 80.0, "device_round_trip_ms": 60.0}
    assert system_latency_ms(through, before, after) == 130.0 - 12.0
    wrong = {"round_trip_ms": 112.0, "device_round_trip_ms": 362.0}
    assert system_latency_ms(through, before, wrong) == 126.0
    # CI, both loopbacks wrong (56 vs 169, 82 vs 348 ms) while the through runs' estimates followed their
    # streams (226 vs 89, 262 vs 127 ms): the through run's own figure, the server's share taken as zero.
    assert system_latency_ms(through, wrong, wrong) == 130.0
    assert system_latency_ms({"round_trip_ms": 262.0, "device_round_trip_ms": 127.0}, wrong, wrong) == 135.0
    wrong_through = {"round_trip_ms": 190.0, "device_round_trip_ms": 362.0}
    assert system_latency_ms(wrong_through, wrong, wrong) == 190.0 - 112.0
    with pytest.raises(ValueError):
        system_latency_ms(through)


def test_the_live_evaluation_splits_its_probing_into_up_to_three_runs_of_three_seconds_or_more():
    """Pure arithmetic: `eval-convert --live --seconds S` probes through one converter session in runs
    whose median latency it reports; a run never gets less than 3 s (the probe needs several bursts)."""
    from studio.engine.convert.live_eval import probe_runs

    assert probe_runs(60.0) == [20.0, 20.0, 20.0]
    assert probe_runs(8.0) == [4.0, 4.0]
    assert probe_runs(3.0) == [3.0]
    assert probe_runs(1.0) == [1.0]
    assert sum(probe_runs(47.0)) == pytest.approx(47.0)
