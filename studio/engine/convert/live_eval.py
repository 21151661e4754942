"""Measuring live conversion end to end through a real sound server (``studio eval-convert --live``).

A private PulseAudio server (:mod:`studio.engine.audio.private_pulse`; ``pulseaudio`` must be
installed; nothing of the user's sound setup is touched) has two null sinks: ``mic_sink`` stands in
for the microphone (the converter records its monitor) and ``test_sink`` for the speakers (the
converter plays into it). Each sink's monitor keeps a low-latency reader: a null sink nobody listens
to at low latency renders in 2-second blocks, and streams on it then start late and stall for ~2 s at
random.

The latency probe (:mod:`.latency_probe`, a child process with its own streams) plays speech-like
bursts into ``mic_sink`` while recording ``test_sink.monitor``, in up to three runs over the session
(``probe_runs``; the median of their latencies is reported: the converter's latency is fixed within a
session, while one run's PortAudio estimate of the probe's own round trip is now and then ~50 ms
off), and once through a plain loopback (``mic_sink`` → its monitor) before and after the session, whose mean round trip is
subtracted (each run's own device round trip taken out first: :func:`~.latency_probe.system_latency_ms`). The converter's own
counters give underruns, device underflows and input overflows, and per-block inference time.

A fresh server holds back every stream for its first ~2 s: ``start_rig`` waits until the server's
start-up silence has drained, so the first probe starts at once.

Shutdown: the server, its helpers, the probe and the converter are stopped on a normal return, on an
exception (KeyboardInterrupt included) and, when run from the main thread, on SIGTERM or SIGHUP
(:mod:`studio.engine.shutdown_signals`: the signal is acted on once the server is up, and passed on
to the previous handler after the clean-up, so by default the process still ends by it). Should the
process be SIGKILLed, the server and its helpers die with it (PR_SET_PDEATHSIG).

``run_live_eval`` must be called before anything imports ``sounddevice`` in this process (PortAudio
lists devices once). Runs on the calling thread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np

from studio.engine.audio.private_pulse import (
    MIC_SINK,
    MIC_SOURCE,
    OUTPUT_SINK,
    PrivatePulse,
    PrivatePulseError,
)
from studio.engine.convert.latency_probe import system_latency_ms
from studio.engine.convert.world import ConversionError
from studio.engine.shutdown_signals import ShutdownRequested, ShutdownSignals

log = logging.getLogger(__name__)

OUTPUT_MONITOR = f"{OUTPUT_SINK}.monitor"
THROUGH_RUNS = 3  # probe runs through one converter session (their median latency is reported)
MIN_RUN_SECONDS = 3.0


class SoundRigError(ConversionError):
    """The private sound server could not be started (PulseAudio missing or failing)."""


def start_rig() -> PrivatePulse:
    """Start the private server (default input ``mic_sink.monitor``, output ``test_sink``, a reader on
    each monitor), point this process (and its children) at it and wait until it is warm."""
    if "sounddevice" in sys.modules:
        raise SoundRigError("sounddevice was imported before the private sound server started; run the live evaluation first")
    try:
        rig = PrivatePulse.start(
            default_source=MIC_SOURCE, readers=(OUTPUT_MONITOR, MIC_SOURCE), prefix="studio-live-eval-"
        )
    except PrivatePulseError as exc:
        raise SoundRigError(f"the live evaluation needs a private PulseAudio server: {exc}") from exc
    try:
        rig.wait_warm()
    except BaseException:
        rig.stop()
        raise
    return rig


def _probe(seconds: float, sink: str, source: str) -> dict:
    env = dict(os.environ, PULSE_SINK=sink, PULSE_SOURCE=source)
    done = subprocess.run(
        [sys.executable, "-m", "studio.engine.convert.latency_probe", str(seconds)],
        env=env, capture_output=True, text=True, timeout=seconds * 4 + 60,
    )
    if done.returncode != 0:
        raise ConversionError(f"the latency probe failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe_runs(seconds: float) -> list[float]:
    """How the ``seconds`` of through-probing are split: up to ``THROUGH_RUNS`` runs of at least
    ``MIN_RUN_SECONDS`` each (seconds per run)."""
    runs = max(1, min(THROUGH_RUNS, int(seconds // MIN_RUN_SECONDS)))
    return [seconds / runs] * runs


def _measure(target, seconds: float, hop_ms: float | None, signals: ShutdownSignals) -> tuple:
    """A loopback probe, the converter with the through probe runs (``probe_runs``), a loopback probe
    again; (loopbacks, through runs, stats, pauses). Each clean-up holds ``signals`` first, so a shutdown signal
    cannot cut it short."""
    from studio.engine.convert.live import LiveConverter, LiveSettings
    from studio.engine.convert.pause_monitor import PauseMonitor

    loopback = _probe(2.0, MIC_SINK, MIC_SOURCE)
    settings = LiveSettings(target=target, input_device=None, output_device=None)
    if hop_ms is not None:
        settings.hop_ms = hop_ms
    monitor = PauseMonitor().start()
    try:
        converter = LiveConverter(settings).start()
        try:
            through = [_probe(part, MIC_SINK, OUTPUT_MONITOR) for part in probe_runs(seconds)]
            stats = converter.run_for(0.2)
        finally:
            signals.hold()
            converter.stop()
    finally:
        signals.hold()
        pauses = monitor.stop()
    after = _probe(2.0, MIC_SINK, MIC_SOURCE)
    return (loopback, after), through, stats, pauses


def run_live_eval(target, seconds: float = 60.0, hop_ms: float | None = None) -> dict:
    """Run live conversion to ``target`` (a ConversionTarget) for ``seconds`` of probe signal; a JSON-able dict.

    Keys: latency_ms (measured, the loopbacks' mean subtracted; the median over the through runs),
    latency_runs_ms (each through run's), loopback_ms (the loopbacks' round trips, before and after),
    probes (the through runs' details), loopbacks (the loopback runs'), stats (the converter's final LiveStats), machine_pauses (what
    :class:`~.pause_monitor.PauseMonitor` saw meanwhile: all CPUs stopped), bounds (zero underruns and
    input overflows, converter's and device's; latency ≤ 150 ms; probe clean and found).
    """
    with ShutdownSignals() as signals:
        try:
            rig = start_rig()  # held: a signal during the start is acted on once the server is up
            try:
                signals.arm()
                loopbacks, through, stats, pauses = _measure(target, seconds, hop_ms, signals)
            finally:
                signals.hold()
                rig.stop()
        except ShutdownRequested:
            pass
    if signals.received is not None:
        log.warning("the live evaluation got %s: the sound server and its helpers are stopped",
                    signal.Signals(signals.received).name)
        signals.pass_on()  # the default handler ends the process here
        raise ConversionError(f"the live evaluation was stopped by {signal.Signals(signals.received).name}")
    latencies = [system_latency_ms(run, *loopbacks) for run in through]
    latency = float(np.median(latencies))
    return {
        "seconds": seconds, "target": target.describe(), "latency_ms": latency, "latency_runs_ms": latencies,
        "loopback_ms": [run["round_trip_ms"] for run in loopbacks],
        "probes": through, "loopbacks": list(loopbacks), "stats": stats.to_dict(), "machine_pauses": pauses,
        "bounds": {
            "zero_underruns": stats.underruns == 0 and stats.input_overflows == 0,
            "zero_device_underflows": stats.device_underflows == 0,
            "zero_device_input_overflows": stats.device_input_overflows == 0,
            "latency_at_most_150_ms": 0 < latency <= 150.0,
            "probe_clean": all(run["clean"] for run in (*through, *loopbacks)),
            "probe_found": all(run["correlation"] > 0.8 for run in through),
        },
    }
