"""A private PulseAudio server for the tests: real audio through a null sink and its monitor.

Layout: two null sinks at 48 kHz stereo. ``test_sink`` is the default output and its monitor the
default input, so what a test plays comes back when it records (a loopback). ``mic_sink`` is a second
sink for live input→output tests: play a signal into it with ``paplay -d mic_sink`` and point the
default source at ``mic_sink.monitor`` (``use_sources``) so the converter's output (``test_sink``) does
not feed back into its input.

The server must run before ``sounddevice`` is imported (PortAudio lists devices once).
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


@dataclass
class PulseServer:
    runtime_dir: str
    server: subprocess.Popen
    warmup: subprocess.Popen | None

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], check=True, capture_output=True, text=True, timeout=10).stdout

    def use_sources(self, sink: str = "test_sink", source: str = "test_sink.monitor") -> None:
        """Set the default output sink and input source (takes effect for streams opened after)."""
        self.pactl("set-default-sink", sink)
        self.pactl("set-default-source", source)

    def stop(self) -> None:
        for proc in (self.warmup, self.server):
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
    server = subprocess.Popen(
        ["pulseaudio", "-n", "-F", config, "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr"],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(runtime_dir, "pulse.log"), "w"),  # noqa: SIM115 (lives with the server)
    )
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"PulseAudio did not start; see {runtime_dir}/pulse.log")
        time.sleep(0.1)
    # Without a reader on the monitor the first capture read can stall for up to 2 s.
    warmup = subprocess.Popen(
        ["parec", "-d", "test_sink.monitor", "--latency-msec=20", "--raw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return PulseServer(runtime_dir, server, warmup)
