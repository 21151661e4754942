"""Measuring live conversion end to end through a real sound server (``studio eval-convert --live``).

A private PulseAudio server (``pulseaudio`` must be installed; nothing of the user's sound setup is
touched) gets two null sinks: ``mic_sink`` stands in for the microphone (the converter records its
monitor) and ``out_sink`` for the speakers (the converter plays into it). Each sink's monitor keeps a
low-latency reader: a null sink nobody listens to at low latency renders in 2-second blocks, and
streams on it then start late and stall for ~2 s at random.

The latency probe (:mod:`.latency_probe`, a child process with its own streams) plays speech-like
bursts into ``mic_sink`` while recording ``out_sink.monitor`` for the whole run, and once through a
plain loopback (``mic_sink`` → its monitor) whose round trip is subtracted (each run's own device
round trip taken out first: :func:`~.latency_probe.system_latency_ms`). The converter's own
counters give underruns, device underflows and input overflows, and per-block inference time.

A fresh server holds back every stream for its first ~2 s: ``start_rig`` plays a short silence into
each sink and waits until it has drained, so the first probe starts at once.

``run_live_eval`` must be called before anything imports ``sounddevice`` in this process (PortAudio
lists devices once). Runs on the calling thread.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from studio.engine.convert.latency_probe import system_latency_ms
from studio.engine.convert.world import ConversionError

log = logging.getLogger(__name__)

RIG_RATE = 48000
WARM_UP_S = 0.2
RIG_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=out_sink rate={rate} channels=2
load-module module-null-sink sink_name=mic_sink rate={rate} channels=2
set-default-sink out_sink
set-default-source mic_sink.monitor
"""


class SoundRigError(ConversionError):
    """The private sound server could not be started (PulseAudio missing or failing)."""


@dataclass
class SoundRig:
    runtime_dir: str
    processes: list[subprocess.Popen]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def start_rig() -> SoundRig:
    """Start the private server and point this process (and its children) at it."""
    if shutil.which("pulseaudio") is None or shutil.which("parec") is None:
        raise SoundRigError("the live evaluation needs PulseAudio (`apt-get install pulseaudio pulseaudio-utils`)")
    if "sounddevice" in sys.modules:
        raise SoundRigError("sounddevice was imported before the private sound server started; run the live evaluation first")
    runtime_dir = tempfile.mkdtemp(prefix="studio-live-eval-")
    os.chmod(runtime_dir, 0o700)
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    os.environ.pop("PULSE_SERVER", None)
    config = os.path.join(runtime_dir, "rig.pa")
    with open(config, "w") as fh:
        fh.write(RIG_CONFIG.format(rate=RIG_RATE))
    log_file = open(os.path.join(runtime_dir, "pulse.log"), "w")  # noqa: SIM115 (lives with the server)
    server = subprocess.Popen(
        ["pulseaudio", "-n", "-F", config, "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr"],
        stdout=subprocess.DEVNULL, stderr=log_file,
    )
    rig = SoundRig(runtime_dir, [server])
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            rig.stop()
            raise SoundRigError(f"PulseAudio did not start (see {runtime_dir}/pulse.log)")
        time.sleep(0.1)
    for monitor in ("out_sink.monitor", "mic_sink.monitor"):
        rig.processes.append(subprocess.Popen(
            ["parec", "-d", monitor, "--latency-msec=20", "--raw"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    _warm_up(rig)
    return rig


def _warm_up(rig: SoundRig, timeout: float = 15.0) -> None:
    """Play WARM_UP_S of silence into each sink and wait until it drained (the start-up stall is over)."""
    if shutil.which("pacat") is None:
        time.sleep(3.0)  # the stall lasted up to ~2 s
        return
    silence = bytes(int(WARM_UP_S * RIG_RATE) * 2 * 2)
    players = []
    for sink in ("out_sink", "mic_sink"):
        player = subprocess.Popen(
            ["pacat", "--playback", "-d", sink, "--raw", "--format=s16le", f"--rate={RIG_RATE}", "--channels=2",
             "--latency-msec=20"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        player.stdin.write(silence)  # fits the pipe: no block
        player.stdin.close()
        players.append(player)
    for player in players:
        try:
            player.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            player.kill()
            log.warning("the sound server's warm-up did not finish in %.0f s", timeout)


def _probe(seconds: float, sink: str, source: str) -> dict:
    env = dict(os.environ, PULSE_SINK=sink, PULSE_SOURCE=source)
    done = subprocess.run(
        [sys.executable, "-m", "studio.engine.convert.latency_probe", str(seconds)],
        env=env, capture_output=True, text=True, timeout=seconds * 4 + 60,
    )
    if done.returncode != 0:
        raise ConversionError(f"the latency probe failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_live_eval(target, seconds: float = 60.0, hop_ms: float | None = None) -> dict:
    """Run live conversion to ``target`` (a ConversionTarget) for ``seconds`` of probe signal; a JSON-able dict.

    Keys: latency_ms (measured, loopback subtracted), loopback_ms, probe (the through-run's details),
    loopback (the loopback run's), stats (the converter's final LiveStats), machine_pauses (what
    :class:`~.pause_monitor.PauseMonitor` saw meanwhile: all CPUs stopped), bounds (zero underruns and
    input overflows, converter's and device's; latency ≤ 150 ms; probe clean and found).
    """
    rig = start_rig()
    try:
        from studio.engine.convert.live import LiveConverter, LiveSettings
        from studio.engine.convert.pause_monitor import PauseMonitor

        loopback = _probe(2.0, "mic_sink", "mic_sink.monitor")
        settings = LiveSettings(target=target, input_device=None, output_device=None)
        if hop_ms is not None:
            settings.hop_ms = hop_ms
        monitor = PauseMonitor().start()
        try:
            converter = LiveConverter(settings).start()
            try:
                through = _probe(seconds, "mic_sink", "out_sink.monitor")
                stats = converter.run_for(0.2)
            finally:
                converter.stop()
        finally:
            pauses = monitor.stop()
    finally:
        rig.stop()
    latency = system_latency_ms(through, loopback)
    return {
        "seconds": seconds, "target": target.describe(), "latency_ms": latency, "loopback_ms": loopback["round_trip_ms"],
        "probe": through, "loopback": loopback, "stats": stats.to_dict(), "machine_pauses": pauses,
        "bounds": {
            "zero_underruns": stats.underruns == 0 and stats.input_overflows == 0,
            "zero_device_underflows": stats.device_underflows == 0,
            "zero_device_input_overflows": stats.device_input_overflows == 0,
            "latency_at_most_150_ms": 0 < latency <= 150.0,
            "probe_clean": bool(through["clean"] and loopback["clean"]),
            "probe_found": through["correlation"] > 0.8,
        },
    }
