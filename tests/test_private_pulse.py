"""The private PulseAudio server (studio.engine.audio.private_pulse) and its clean-up, through the real
``pulseaudio`` binary: a second server gives a working loopback and leaves nothing behind; ``studio
eval-convert --live`` stops its server, helpers and probe when it gets SIGTERM or SIGHUP; a SIGKILLed
owner takes its server and helpers with it (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from support.audio import dominant_frequency

from studio.engine.audio.private_pulse import (
    CLIENT_VARIABLES,
    LOOPBACK_SOURCE,
    MIC_SOURCE,
    OUTPUT_SINK,
    SINK_RATE,
    PrivatePulse,
    missing_tools,
)
from studio.engine.shutdown_signals import ShutdownRequested, ShutdownSignals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PULSE_PROGRAMS = {"pulseaudio", "parec", "pacat"}

needs_pulse = pytest.mark.skipif(bool(missing_tools()), reason="PulseAudio is not installed (scripts/setup)")


def descendants(pid: int) -> dict[int, str]:
    """Every living descendant of ``pid``: {pid: command line}, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.split("/")[2])] = int(fields[1])
    found, frontier = {}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        for child in frontier:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as fh:
                    found[child] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                pass
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def program(cmdline: str) -> str:
    return os.path.basename(cmdline.split(" ", 1)[0])


def wait_for(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@needs_pulse
def test_a_second_server_loops_back_a_tone_and_stop_leaves_nothing(tmp_path):
    """Start → the environment points at it and its defaults are the loopback layout; a 1 kHz tone
    played into test_sink comes back from its monitor; stop → no process, no folder, environment back."""
    before = {name: os.environ.get(name) for name in CLIENT_VARIABLES}
    pulse = PrivatePulse.start(readers=(LOOPBACK_SOURCE, MIC_SOURCE))
    try:
        assert os.environ["PULSE_SERVER"] == pulse.server_address != before["PULSE_SERVER"]
        info = subprocess.run(["pactl", "info"], capture_output=True, text=True, timeout=10, check=True).stdout
        assert pulse.socket_path in info
        assert f"Default Sink: {OUTPUT_SINK}" in info and f"Default Source: {LOOPBACK_SOURCE}" in info
        pids = {p.pid: p.args[0] for p in pulse.processes()}
        assert sorted(pids.values()).count("parec") == 2 and "pulseaudio" in pids.values()
        assert pulse.wait_warm(), "the start-up silence did not drain"

        raw = tmp_path / "loop.raw"
        t = np.arange(int(0.6 * SINK_RATE)) / SINK_RATE
        tone = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
        with open(raw, "wb") as out:
            recorder = subprocess.Popen(
                ["parec", "-d", LOOPBACK_SOURCE, "--raw", "--format=s16le", f"--rate={SINK_RATE}", "--channels=1",
                 "--latency-msec=20"], stdout=out, env=pulse.env(),
            )
            try:
                subprocess.run(
                    ["pacat", "--playback", "-d", OUTPUT_SINK, "--raw", "--format=s16le", f"--rate={SINK_RATE}",
                     "--channels=1"], input=tone.tobytes(), env=pulse.env(), check=True, timeout=20,
                )
                time.sleep(0.2)
            finally:
                recorder.terminate()
                recorder.wait(timeout=5)
        heard = np.fromfile(raw, dtype="<i2").astype(np.float32) / 32768
        loud = np.flatnonzero(np.abs(heard) > 0.25)
        assert loud.size and loud[-1] - loud[0] > 0.5 * SINK_RATE, f"the tone did not come back ({loud.size} loud samples)"
        assert dominant_frequency(heard[loud[0] : loud[-1]], SINK_RATE) == pytest.approx(1000, abs=5)
    finally:
        pulse.stop()
    assert not os.path.exists(pulse.runtime_dir)
    assert not [pid for pid in pids if alive(pid)]
    assert {name: os.environ.get(name) for name in CLIENT_VARIABLES} == before


@needs_pulse
def test_a_sigkilled_owner_takes_its_server_and_helpers_with_it(tmp_path):
    script = (
        "import time\n"
        "from studio.engine.audio.private_pulse import PrivatePulse\n"
        "pulse = PrivatePulse.start()\n"
        "print(pulse.runtime_dir, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        runtime_dir = owner.stdout.readline().strip()
        assert runtime_dir.startswith(str(tmp_path)), runtime_dir
        def server_and_reader() -> dict[int, str] | None:
            found = {pid: c for pid, c in descendants(owner.pid).items() if program(c) in PULSE_PROGRAMS}
            return found if {program(c) for c in found.values()} >= {"pulseaudio", "parec"} else None

        helpers = wait_for(server_and_reader, 10)
        assert helpers, descendants(owner.pid)
        owner.kill()
        owner.wait(timeout=10)
        left = wait_for(lambda: not [pid for pid in helpers if alive(pid)], 10)
        assert left, f"still running after the owner was SIGKILLed: {[helpers[p] for p in helpers if alive(p)]}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    shutil.rmtree(runtime_dir)  # nobody was left to remove it: the one thing a SIGKILL leaves behind


def test_shutdown_signals_hold_arm_restore_and_pass_on():
    """Real signals (SIGUSR1 stands in for SIGTERM) in the main thread: held → only recorded; arm() →
    raised at once; armed → raised where the code is; after the block the old handler is back and
    pass_on() gives it the signal."""
    seen = []

    def record(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGUSR1, record)
    try:
        with ShutdownSignals((signal.SIGUSR1,)) as signals:
            assert signals.installed == (signal.SIGUSR1,)
            signals.hold()
            signal.raise_signal(signal.SIGUSR1)
            assert signals.received == signal.SIGUSR1 and not seen
            with pytest.raises(ShutdownRequested, match="SIGUSR1"):
                signals.arm()
            signals.received = None
            signals.arm()
            with pytest.raises(ShutdownRequested):
                signal.raise_signal(signal.SIGUSR1)
                time.sleep(1)  # not reached: the handler raises first
            signal.raise_signal(signal.SIGUSR1)  # disarmed by the first raise: recorded only
        assert signal.getsignal(signal.SIGUSR1) is record and not seen
        signals.pass_on()
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


LIVE_DRIVER = (
    "import signal, sys\n"
    "signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, even when the tests run under nohup\n"
    "from studio.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def start_live_eval(tmp_path) -> subprocess.Popen:
    pytest.importorskip("pyworld", reason="live conversion needs the voice extra (pyworld)")
    return subprocess.Popen(
        [sys.executable, "-c", LIVE_DRIVER, "eval-convert", "--live", "--seconds", "3", "--pitch", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def assert_stopped_cleanly(proc: subprocess.Popen, signum: int, seen: dict[int, str], tmp_path) -> None:
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"eval-convert --live did not end after {signal.Signals(signum).name}: {err[-2000:]}")
    assert proc.returncode == -signum, err[-2000:]  # cleaned up, then ended by the signal itself
    assert f"got {signal.Signals(signum).name}" in err, err[-2000:]
    left = wait_for(lambda: [seen[p] for p in seen if alive(p)] or None, 0.5) or []
    assert not left, f"left running: {left}"
    assert not glob.glob(str(tmp_path / "studio-live-eval-*")), "the server's runtime folder was left"


@needs_pulse
@pytest.mark.slow
def test_sigterm_during_the_live_evaluation_stops_server_helpers_and_probe(tmp_path):
    proc = start_live_eval(tmp_path)
    try:
        seen: dict[int, str] = {}

        def probing() -> bool:
            seen.update(descendants(proc.pid))
            return any("latency_probe" in c for c in seen.values()) or proc.poll() is not None

        assert wait_for(probing, 90), "the live evaluation never started its probe"
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        seen.update(descendants(proc.pid))
        assert {program(c) for c in seen.values()} >= {"pulseaudio", "parec"}, seen
        assert len(glob.glob(str(tmp_path / "studio-live-eval-*"))) == 1
        proc.send_signal(signal.SIGTERM)
        assert_stopped_cleanly(proc, signal.SIGTERM, seen, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@needs_pulse
@pytest.mark.slow
def test_sighup_while_the_server_starts_is_acted_on_once_it_is_up(tmp_path):
    """The signal comes while the server is still warming up: the start finishes, then everything stops."""
    proc = start_live_eval(tmp_path)
    try:
        seen: dict[int, str] = {}

        def server_started() -> bool:
            seen.update(descendants(proc.pid))
            return any(program(c) == "pulseaudio" for c in seen.values()) or proc.poll() is not None

        assert wait_for(server_started, 90, step=0.01), "the live evaluation never started its server"
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:  # note the helpers it still starts
            seen.update(descendants(proc.pid))
            time.sleep(0.01)
        assert not any("latency_probe" in c for c in seen.values()), "a probe ran after the signal"
        assert_stopped_cleanly(proc, signal.SIGHUP, seen, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
