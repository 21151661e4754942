"""Measuring end-to-end latency: play a known signal into an input, find it in an output.

The probe opens ONE full-duplex stream on the default devices of its process (on a PulseAudio test
rig the caller picks them with ``PULSE_SINK``/``PULSE_SOURCE`` in the probe's environment), so what it
plays and what it records share one clock: the offset at which the played signal's amplitude envelope
best matches the recording's is the round trip. Envelopes (not waveforms) are matched, so the signal
is found after pitch shifting or speaker conversion. Subtracting the probe's own round trip through a
plain loopback leaves the latency of the system under test, device paths included.

The probe's own device round trip changes from one stream to the next (how full the sound server
let its buffers start: 50–68 ms between five loopback runs in a row here), so each run also records
PortAudio's estimate of it (output DAC time − input ADC time, which followed those changes within
±3 ms) and :func:`system_latency_ms` subtracts it from both runs before comparing them.

Run as ``python -m studio.engine.convert.latency_probe SECONDS [RECORDING.wav]`` it prints the round
trip in ms (one line of JSON) and optionally saves what it recorded (float WAV at 48 kHz). Runs on the calling thread, except the PortAudio callback.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from studio.engine.audio import devices
from studio.engine.convert import realtime

log = logging.getLogger(__name__)

PROBE_RATE = 48000
BURST_S = 0.25
GAP_S = 0.55
ENVELOPE_MS = 2.0
PROBE_F0_HZ = 140.0


def probe_signal(seconds: float, rate: int = PROBE_RATE) -> np.ndarray:
    """Speech-like bursts (a 140 Hz buzz with a formant-ish tilt, 250 ms on, 550 ms off) after 0.5 s of silence."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * PROBE_F0_HZ * k * t) / k for k in range(1, 25))
    period = BURST_S + GAP_S
    phase = (t - 0.5) % period
    on = (t >= 0.5) & (phase < BURST_S)
    ramp = np.clip(np.minimum(phase, BURST_S - phase) / 0.005, 0.0, 1.0)
    return (0.25 * buzz * on * ramp / np.max(np.abs(buzz))).astype(np.float32)


def envelope(x: np.ndarray, rate: int) -> np.ndarray:
    """Amplitude envelope in dB-ish units (log of a short moving RMS), float64 [T // step]."""
    step = max(1, int(rate * ENVELOPE_MS / 1000))
    n = x.shape[0] // step
    frames = np.asarray(x[: n * step], dtype=np.float64).reshape(n, step)
    return np.log(np.sqrt(np.mean(frames**2, axis=1)) + 1e-4)


def find_delay(played: np.ndarray, recorded: np.ndarray, rate: int, max_delay_s: float = 0.6) -> tuple[float, float]:
    """(delay in seconds, normalised correlation) of ``played`` inside ``recorded`` by envelope matching."""
    a = envelope(played, rate)
    b = envelope(recorded, rate)
    a = a - a.mean()
    b = b - b.mean()
    step_s = ENVELOPE_MS / 1000
    best, best_lag = -np.inf, 0
    n = min(a.shape[0], b.shape[0])
    for lag in range(int(max_delay_s / step_s)):
        m = n - lag
        if m <= 10:
            break
        c = float(np.dot(a[:m], b[lag : lag + m]) / (np.linalg.norm(a[:m]) * np.linalg.norm(b[lag : lag + m]) + 1e-12))
        if c > best:
            best, best_lag = c, lag
    return best_lag * step_s, best


MAX_CALLBACK_GAP_S = 0.1  # a longer pause between callbacks (after the first) broke the stream's timing
DEFAULT_ATTEMPTS = 3
# The probe's own device buffers: its round trip is taken out (see system_latency_ms), so they cost
# the measurement nothing, but through ALSA's pulse plugin a 16 ms buffer ("low") underflowed whenever
# the machine paused for longer (a restarted stream no longer shares one clock with the recording: the
# run is not clean). 100 ms rides through the 16–46 ms pauses of a busy test VM; PortAudio's estimate
# of the round trip still matched the measured one within 3 ms.
PROBE_LATENCY_S = 0.1
PROBE_BLOCK = 256
PROBE_PRIORITY = 40  # SCHED_FIFO for the probe's callback thread, as the live path's callbacks get


@dataclass
class ProbeRun:
    """One play-and-record run. ``clean`` runs kept one clock: no device glitch, no stall, all played."""

    recorded: np.ndarray
    completed: bool
    callbacks: int
    output_underflows: int
    input_overflows: int
    max_gap_s: float
    device_round_trip_s: float = 0.0  # median of PortAudio's (output DAC time − input ADC time) over the run

    @property
    def clean(self) -> bool:
        return self.completed and not self.output_underflows and not self.input_overflows and self.max_gap_s < MAX_CALLBACK_GAP_S


def play_and_record(signal: np.ndarray, rate: int = PROBE_RATE) -> ProbeRun:
    """Play ``signal`` on the default output while recording the default input, in one duplex stream.

    The stream's first callback may come late (sound servers start streams lazily); after that, a
    pause longer than MAX_CALLBACK_GAP_S or a device glitch means the output and the input no longer
    share one clock, and the run is reported as not clean.
    """
    sd = devices.sd()
    recorded = np.zeros(signal.shape[0], dtype=np.float32)
    blocks = signal.shape[0] // 64 + 8  # callbacks get at least 64 frames
    stamps = np.zeros(blocks)
    device_round_trip = np.zeros(blocks)
    state = {"position": 0, "calls": 0, "out_under": 0, "in_over": 0}
    done = threading.Event()

    def callback(indata, outdata, frames, time_info, status) -> None:
        calls = state["calls"]
        if calls == 0:
            realtime.make_realtime(PROBE_PRIORITY)  # where allowed; refused: runs at normal priority
        if calls < blocks:
            stamps[calls] = time.monotonic()
        state["calls"] = calls + 1
        if calls < blocks:
            device_round_trip[calls] = time_info.outputBufferDacTime - time_info.inputBufferAdcTime
        state["out_under"] += int(status.output_underflow)
        state["in_over"] += int(status.input_overflow)
        p = state["position"]
        n = min(frames, signal.shape[0] - p)
        outdata.fill(0.0)
        if n > 0:
            outdata[:n, 0] = signal[p : p + n]
            outdata[:n, 1] = signal[p : p + n]
            recorded[p : p + n] = indata[:n, 0]
        state["position"] = p + frames
        if state["position"] >= signal.shape[0]:
            done.set()

    with sd.Stream(
        samplerate=rate, blocksize=PROBE_BLOCK, channels=(1, 2), dtype="float32", latency=PROBE_LATENCY_S, callback=callback
    ):
        completed = done.wait(timeout=signal.shape[0] / rate + 5)
    used = stamps[: min(state["calls"], blocks)]
    return ProbeRun(
        recorded=recorded, completed=completed, callbacks=state["calls"], output_underflows=state["out_under"],
        input_overflows=state["in_over"], max_gap_s=float(np.diff(used).max()) if used.shape[0] > 1 else float("inf"),
        device_round_trip_s=float(np.median(device_round_trip[: used.shape[0]])) if used.shape[0] else 0.0,
    )


ESTIMATE_SLACK_MS = 10.0
"""How far below zero a run's measured-minus-estimated round trip may come before the estimate is distrusted."""


def system_latency_ms(through: dict, *loopbacks: dict) -> float:
    """Latency of what sits between the probe's output and input in ``through`` (ms), from
    :func:`measure` results: each run's own device round trip is taken out, then what the plain
    ``loopbacks`` runs still measured (the sound server's share, a few ms; their mean) is subtracted.

    Pass a loopback run from before the session and one from after it: they bracket the session.

    PortAudio's estimate is usually within a few ms of the stream's real round trip, but not always
    (loopback runs have measured 56–112 ms with estimates of 169–362 ms, which made the converter
    look 40–390 ms slower). A share that comes out negative beyond ``ESTIMATE_SLACK_MS`` means that
    run's estimate is wrong, and the run is left out. When every loopback run's estimate is wrong but
    the through run's is not, the server's share is taken as zero (the result reads those few ms high;
    the probe's own round trip still comes out, which changes by 30–40 ms between streams of one
    session). Only when the through run's own estimate is wrong is the plain difference of the measured
    round trips used (it keeps that spread of the probe's own streams, but no error of the estimate)."""
    if not loopbacks:
        raise ValueError("system_latency_ms needs at least one loopback run")
    own = through["round_trip_ms"] - through["device_round_trip_ms"]
    shares = [run["round_trip_ms"] - run["device_round_trip_ms"] for run in loopbacks]
    trusted = [share for share in shares if share >= -ESTIMATE_SLACK_MS]
    if len(trusted) < len(shares) or own < -ESTIMATE_SLACK_MS:
        log.warning(
            "PortAudio's latency estimate is off (through %.0f ms measured vs %.0f estimated, loopback %s)",
            through["round_trip_ms"], through["device_round_trip_ms"],
            ", ".join(f"{run['round_trip_ms']:.0f} vs {run['device_round_trip_ms']:.0f}" for run in loopbacks),
        )
    if own < -ESTIMATE_SLACK_MS:
        return through["round_trip_ms"] - sum(run["round_trip_ms"] for run in loopbacks) / len(loopbacks)
    return own - (sum(trusted) / len(trusted) if trusted else 0.0)


def measure(seconds: float = 3.0, rate: int = PROBE_RATE, save_to: str | None = None, attempts: int = DEFAULT_ATTEMPTS) -> dict:
    """Play the probe for ``seconds`` and find it in the recording; up to ``attempts`` runs until one is clean.

    Returns round_trip_ms, correlation (of the envelopes at that delay), recorded_rms, clean (whether
    the kept run was clean), attempts and device_round_trip_ms (PortAudio's estimate of the probe's own
    output + input latency in the kept run). ``save_to``: also write the kept recording there (float WAV).
    """
    signal = probe_signal(seconds, rate)
    for attempt in range(1, attempts + 1):
        run = play_and_record(signal, rate)
        if run.clean:
            break
        log.warning(
            "probe run %d was not clean (completed %s, %d callbacks, %d output underflows, %d input overflows, "
            "longest pause %.0f ms)", attempt, run.completed, run.callbacks, run.output_underflows,
            run.input_overflows, run.max_gap_s * 1000,
        )
    if save_to:
        import soundfile

        soundfile.write(save_to, run.recorded, rate, subtype="FLOAT")
    delay, corr = find_delay(signal, run.recorded, rate)
    return {
        "round_trip_ms": delay * 1000, "correlation": corr, "recorded_rms": float(np.sqrt(np.mean(run.recorded**2))),
        "clean": run.clean, "attempts": attempt, "device_round_trip_ms": run.device_round_trip_s * 1000,
    }


if __name__ == "__main__":
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0, save_to=sys.argv[2] if len(sys.argv) > 2 else None)))
