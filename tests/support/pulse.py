"""A private PulseAudio server for the tests: real audio through a null sink and its monitor.

Layout: two null sinks at 48 kHz stereo. ``test_sink`` is the default output and its monitor the
default input, so what a test plays comes back when it records (a loopback). ``mic_sink`` is a second
sink for live input→output tests: play a signal into it with ``paplay -d mic_sink`` and point the
default source at ``mic_sink.monitor`` (``use_sources``) so the converter's output (``test_sink``) does
not feed back into its input.

The server must run before ``sounddevice`` is imported (PortAudio lists devices once).

Warm-up, measured here: for its first ~2 s a fresh server holds back any stream, playback or capture,
from any client (a stream opened at once first called back after 1.5–2 s; one opened 3 s after the
start ran at once, with or without an earlier stream). ``start()`` therefore plays 0.2 s of silence
through ``pacat`` in the background: it drains when that stall is over, so ``wait_warm()`` knows when
streams start at once (tests' subprocesses and the first test need not guess). A reader on the sink's
monitor (``parec``) is kept running too: without it the first capture read stalled as well.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

SINK_RATE = 48000
CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=test_sink rate={rate} channels=2
load-module module-null-sink sink_name=mic_sink rate={rate} channels=2
set-default-sink test_sink
set-default-source test_sink.monitor
"""


WARM_UP_S = 0.2
_latest: PulseServer | None = None  # the server start() made last in this process


@dataclass
class PulseServer:
    runtime_dir: str
    server: subprocess.Popen
    warmup: subprocess.Popen | None
    first_stream: subprocess.Popen | None = None  # pacat playing WARM_UP_S of silence

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], check=True, capture_output=True, text=True, timeout=10).stdout

    def use_sources(self, sink: str = "test_sink", source: str = "test_sink.monitor") -> None:
        """Set the default output sink and input source (takes effect for streams opened after)."""
        self.pactl("set-default-sink", sink)
        self.pactl("set-default-source", source)

    def wait_warm(self, timeout: float = 15.0) -> bool:
        """Wait until the start-up silence has played (the first-stream stall is over); True if so."""
        proc = self.first_stream
        if proc is None:
            return True
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("the sound server warm-up did not finish in %.0f s", timeout)
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the server (as a crash would): every stream on it dies at once."""
        for proc in (self.first_stream, self.warmup, self.server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the server again in the same runtime directory (same socket, same sinks), after
        ``kill()``. Clients that reconnect (new PortAudio streams) reach the new server."""
        self.kill()
        self.server, self.warmup, self.first_stream = _launch(self.runtime_dir)

    def stop(self) -> None:
        for proc in (self.first_stream, self.warmup, self.server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def start() -> PulseServer | None:
    """Start the server and point this process's environment at it; None when PulseAudio is absent."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        log.warning("pulseaudio is not installed: sound tests will be skipped (run scripts/setup)")
        return None
    runtime_dir = tempfile.mkdtemp(prefix="studio-pulse-")
    os.chmod(runtime_dir, 0o700)
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    os.environ.pop("PULSE_SERVER", None)
    config = os.path.join(runtime_dir, "test.pa")
    with open(config, "w") as fh:
        fh.write(CONFIG.format(rate=SINK_RATE))
    global _latest
    _latest = PulseServer(runtime_dir, *_launch(runtime_dir))
    return _latest


def wait_until_warm(timeout: float = 15.0) -> bool:
    """``wait_warm`` on the server this process started last (True when there is none)."""
    return True if _latest is None else _latest.wait_warm(timeout)


def _launch(runtime_dir: str) -> tuple[subprocess.Popen, subprocess.Popen, subprocess.Popen | None]:
    """Run the server on ``runtime_dir``'s config, wait until it answers, start the monitor reader
    and the start-up silence (see the module doc). Returns (server, monitor reader, silence)."""
    config = os.path.join(runtime_dir, "test.pa")
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir}
    env.pop("PULSE_SERVER", None)
    server = subprocess.Popen(
        ["pulseaudio", "-n", "-F", config, "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr"],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(runtime_dir, "pulse.log"), "a"),  # noqa: SIM115 (lives with the server)
        env=env,
    )
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "info"], capture_output=True, env=env).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"PulseAudio did not start; see {runtime_dir}/pulse.log")
        time.sleep(0.1)
    # Without a reader on the monitor the first capture read can stall for up to 2 s.
    monitor_reader = subprocess.Popen(
        ["parec", "-d", "test_sink.monitor", "--latency-msec=20", "--raw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    first_stream = None
    if shutil.which("pacat") is not None:
        first_stream = subprocess.Popen(
            ["pacat", "--playback", "-d", "test_sink", "--raw", "--format=s16le", f"--rate={SINK_RATE}",
             "--channels=2", "--latency-msec=20"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        first_stream.stdin.write(bytes(int(WARM_UP_S * SINK_RATE) * 2 * 2))  # fits the pipe: no block
        first_stream.stdin.close()
    return server, monitor_reader, first_stream
