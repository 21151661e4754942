"""Live conversion: microphone in, converted voice out, through ring buffers and a worker thread.

Three parts, as DESIGN.md's clocks ask:

* the **audio callbacks** (PortAudio's threads; an input stream and an output stream — a full-duplex
  stream through ALSA's pulse plugin stalled and burst on this kind of machine) copy the input block
  into ``in_ring`` and the next output block from ``out_ring``; frames the worker has not delivered
  are played as silence and counted as an underrun. No conversion, no allocation, no locks.
* the **worker thread** ("convert-live") takes input from ``in_ring``, resamples it to 16 kHz,
  runs the :class:`BlockConverter` (WORLD analysis, mapping, synthesis) on every whole hop, resamples
  back to the device rate and writes ``out_ring``. It times every hop (inference time, headroom).
* the GUI or CLI polls :meth:`LiveConverter.stats` (a snapshot; safe from any thread).

Timing is deterministic: both resamplers are polyphase FIRs (:mod:`.polyphase`) that turn each hop of
input into exactly one hop of output at a fixed delay (soxr's stream resampler released output in
irregular chunks, so the ring's level wandered and underran although the worker kept up).

Latency: the output ring starts empty (the callback plays silence, uncounted, until the first
converted frames arrive); the worker puts ``margin`` frames of silence (half a hop of processing
time + one device block + ``safety_ms``) before its first converted block. Every input frame then
leaves a fixed number of frames later: one hop (collecting it), the resamplers' and converter's
delays, ``margin``, plus the device latencies. After an output stall or an underrun the ring would
hold more than ``max_level`` (``margin`` + one hop + ``safety_ms``) after a write: the excess is
dropped, so latency returns to its nominal value instead of creeping.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from studio.engine.audio import devices
from studio.engine.audio.ring import FrameRing, HistoryRing
from studio.engine.convert import realtime
from studio.engine.convert.pipeline import ConversionTarget
from studio.engine.convert.polyphase import PolyphaseResampler
from studio.engine.convert.streaming import (
    DEFAULT_GATE_DB,
    DEFAULT_HOP_MS,
    DEFAULT_LOOKAHEAD_MS,
    LIVE_SAMPLE_RATE,
    BlockConverter,
)

log = logging.getLogger(__name__)

DEFAULT_DEVICE_BLOCK = 256
DEFAULT_SAFETY_MS = 25.0
# PortAudio output latency (seconds). Through ALSA's pulse plugin "low" gave a 16 ms stream buffer
# (~11 ms of slack): on the 2-core test VMs the host stops both CPUs together for 16–46 ms every few
# seconds (SCHED_FIFO C threads pinned to each CPU see the same stops), the sink then wants more than
# the buffer holds, the server reports an underrun and the plugin restarts the stream (a second or
# more of silence). 32 ms (a 42.7 ms buffer) rides through the 16–26 ms stops; see docs/voice.md.
DEFAULT_OUTPUT_LATENCY_S = 0.032
# The longest machine pause (all CPUs stopped; see pause_monitor.py) the default buffers rode through
# here: 26 ms pauses passed, 36 ms ones made the device underflow. Riding through a pause P takes about
# P of device buffer AND P of output-ring margin (the callback refills the device at once when the
# machine resumes, while the input of that moment only then arrives), so each 10 ms more costs ~20 ms
# of latency.
PAUSE_TOLERANCE_MS = 30.0
DEFAULT_INPUT_LATENCY = "low"  # capture delivers each fragment as it comes: a larger buffer only adds delay
HEADROOM_WARNING = 0.25  # warn when the slowest recent hop left less than 25 % of the hop's time
RECENT_HOPS = 50
HISTORY_S = 30.0
CALLBACK_PRIORITY = 40  # SCHED_FIFO priorities (1–99): callbacks above the worker, both above normal threads
WORKER_PRIORITY = 30


VOICE_HOP_MS = 20.0  # per-hop frame matching is ~1.5 ms (issue 7): a voice takes the transforms' 20 ms hop


def default_hop_ms(target: ConversionTarget) -> float:
    """The hop for ``target`` when the settings leave it open: 20 ms for transforms (~1 ms of WORLD per
    hop) and for a target voice (frame matching adds ~1.5 ms: 2.6 ms mean, 3.6 ms p95 per 20 ms hop here)."""
    return VOICE_HOP_MS if target.voice is not None else DEFAULT_HOP_MS


@dataclass
class LiveSettings:
    """Settings of a live session (the GUI's pickers and sliders map onto these).

    input_device / output_device: name, index or None (the defaults); sample_rate: the device rate
    (None: the output device's preferred rate, 48 kHz on sound servers); hop_ms: conversion block
    (longer = more headroom, more latency; None: DEFAULT_HOP_MS (20) for transforms, VOICE_HOP_MS
    (also 20) when converting to a voice, whose per-hop frame matching costs ~2.6 ms here);
    device_block: frames per audio callback; output_latency / input_latency: PortAudio latency hints
    ("low", "high" or seconds; the output's buffer must outlast the longest pause of the machine, see
    DEFAULT_OUTPUT_LATENCY_S); gate_db: noise gate threshold (None = off); monitor:
    play the converted voice (off: converted audio is still made and kept in the history, silence
    is played); safety_ms: extra prefill against processing-time jitter; realtime: ask the OS for
    real-time (SCHED_FIFO) priority for the two callback threads and the worker, where allowed (root,
    rtkit-style limits): on a busy machine the callbacks otherwise wait tens of ms for a core and the
    device underflows. Refused requests are ignored (``LiveStats.realtime`` says what was granted).
    """

    target: ConversionTarget = field(default_factory=ConversionTarget)
    input_device: devices.DeviceSpec = None
    output_device: devices.DeviceSpec = None
    sample_rate: int | None = None
    hop_ms: float | None = None
    lookahead_ms: float = DEFAULT_LOOKAHEAD_MS
    device_block: int = DEFAULT_DEVICE_BLOCK
    output_latency: str | float = DEFAULT_OUTPUT_LATENCY_S
    input_latency: str | float = DEFAULT_INPUT_LATENCY
    gate_db: float | None = DEFAULT_GATE_DB
    monitor: bool = True
    safety_ms: float = DEFAULT_SAFETY_MS
    output_channels: int = 2
    realtime: bool = True


@dataclass(frozen=True)
class LiveStats:
    """A snapshot for readouts. Times in milliseconds; ``headroom`` is 1 − (slowest recent hop / hop length).

    Glitch counters: ``underruns`` / ``underrun_frames``: output callbacks (frames) the worker had not
    filled; ``input_overflows``: input frames dropped because the worker fell behind (input ring
    full); ``device_underflows`` / ``device_input_overflows``: callbacks whose PortAudio status had
    ``output_underflow`` / ``input_overflow`` set (the device or sound server ran dry or overflowed:
    through ALSA's pulse plugin each one restarts the stream). ``longest_callback_gap_ms``: the
    longest pause between two output callbacks after the first converted audio (a stall of the machine
    or of the sound server shows here before it becomes an underflow).
    """

    running: bool
    seconds: float
    hops: int
    gated_hops: int
    underruns: int
    underrun_frames: int
    device_underflows: int
    input_overflows: int
    device_input_overflows: int
    longest_callback_gap_ms: float
    inference_ms_last: float
    inference_ms_mean: float
    inference_ms_max_recent: float
    hop_ms: float
    headroom: float
    latency_ms: float
    device_latency_ms: float
    internal_latency_ms: float
    warning: str | None
    error: str | None
    realtime: dict[str, bool | None]

    def to_dict(self) -> dict:
        return asdict(self)


class LiveConverter:
    """A running live conversion (``start()``/``stop()`` or a ``with`` block). See the module docstring."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self._stream = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._started_at: float | None = None
        # Counters: each has one writer (callback or worker).
        self._cb_missing = 0  # frames the callback had to fill with silence (after priming)
        self._cb_underruns = 0
        self._cb_device_underflows = 0
        self._cb_device_overflows = 0
        self._cb_overflow_frames = 0
        self._cb_last_output_at = 0.0  # time.monotonic() of the last output callback (after priming)
        self._cb_longest_gap = 0.0
        self._primed = False
        # Real-time priority granted per thread kind (None: not asked yet; see realtime.py).
        self._rt_granted = {"input": None, "output": None, "worker": None, "sound_client": None}
        self._dropped_excess = 0
        self._hops = 0
        self._gated = 0
        self._recent = np.zeros(RECENT_HOPS)
        self._inference_total = 0.0
        self._last_inference = 0.0
        self.converter: BlockConverter | None = None
        self.rate = 0
        self.margin = 0
        self._first_write_at = None
        self._cb_frames = 0
        self._device_latency = (0.0, 0.0)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LiveConverter:
        """Open both streams and the worker; on any failure everything opened so far is closed again.
        A converter runs once (its counters describe that run): make a new one to start again."""
        if self._started_at is not None or self._worker is not None:
            raise RuntimeError("this LiveConverter has already run: make a new one to start again")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LiveConverter:
        s = self.settings
        sd = devices.sd()
        out_info = devices.validate_output(s.output_device, s.sample_rate, s.output_channels)
        rate = int(s.sample_rate or out_info.preferred_rate)
        in_info = devices.validate_input(s.input_device, rate, 1)
        self.rate = rate
        self.hop_ms = default_hop_ms(s.target) if s.hop_ms is None else float(s.hop_ms)
        self.converter = BlockConverter(
            s.target, sample_rate=LIVE_SAMPLE_RATE, hop_ms=self.hop_ms, lookahead_ms=s.lookahead_ms, gate_db=s.gate_db
        )
        hop_s = self.converter.hop / LIVE_SAMPLE_RATE
        self.hop_in = int(round(hop_s * rate))
        expected_processing_s = 0.5 * hop_s
        self.margin = int(round((expected_processing_s + s.safety_ms / 1000.0) * rate)) + s.device_block
        capacity = max(8 * (self.margin + self.hop_in), rate)
        self.in_ring = FrameRing(capacity, 1)
        self.out_ring = FrameRing(capacity, 1)
        self.history_in = HistoryRing(int(HISTORY_S * rate), 1)
        self.history_out = HistoryRing(int(HISTORY_S * rate), 1)
        self._mono = np.zeros((max(s.device_block, 8192), 1), dtype=np.float32)
        self._cb_frames = 0
        self._first_write_at: int | None = None
        self._down = PolyphaseResampler(rate, LIVE_SAMPLE_RATE)
        self._up = PolyphaseResampler(LIVE_SAMPLE_RATE, rate)
        # The most the output ring may hold right after a write: the prefill, one hop, and slack for
        # hops that arrive together. More than that is latency left over from a stall: trimmed.
        self.max_level = self.margin + self.hop_in + int(round(s.safety_ms / 1000.0 * rate))
        self._pending = np.zeros(0, dtype=np.float32)
        self._stop.clear()
        threads_before = realtime.thread_ids()
        try:
            self._in_stream = sd.InputStream(
                device=in_info.index, samplerate=rate, blocksize=s.device_block, channels=1,
                dtype="float32", latency=s.input_latency, callback=self._input_callback,
            )
            self._stream = sd.OutputStream(
                device=out_info.index, samplerate=rate, blocksize=s.device_block, channels=s.output_channels,
                dtype="float32", latency=s.output_latency, callback=self._output_callback,
            )
            self._device_latency = (float(self._in_stream.latency), float(self._stream.latency))
        except (sd.PortAudioError, ValueError, TypeError) as exc:  # TypeError: a malformed latency/block
            raise devices.AudioDeviceError(
                f"cannot open {in_info.name!r} → {out_info.name!r} at {rate} Hz for live conversion: {exc}; "
                "try other devices or a larger block (run `studio devices`)"
            ) from exc
        self._worker = threading.Thread(target=self._work, name="convert-live", daemon=True)
        self._worker.start()
        self._started_at = time.monotonic()
        self._stream.start()
        self._in_stream.start()
        if s.realtime:
            self._rt_granted["sound_client"] = bool(realtime.promote_sound_client_threads(threads_before, CALLBACK_PRIORITY))
        log.info(
            "live conversion: %s → %s at %d Hz, hop %.0f ms, margin %.0f ms, device latency in %.0f / out %.0f ms",
            in_info.name, out_info.name, rate, hop_s * 1000, self.margin / rate * 1000,
            self._device_latency[0] * 1000, self._device_latency[1] * 1000,
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        for name in ("_in_stream", "_stream"):
            stream = getattr(self, name, None)
            if stream is not None:
                try:
                    stream.stop()
                except Exception as exc:  # noqa: BLE001 - a vanished device: still close it
                    log.warning("live conversion: stopping %s failed: %s", name.strip("_"), exc)
                finally:
                    try:
                        stream.close()
                    finally:
                        setattr(self, name, None)
        if self._worker is not None:
            self._worker.join(timeout=5)
            if self._worker.is_alive():
                log.warning("live conversion: the worker did not stop within 5 s")
            self._worker = None

    def __enter__(self) -> LiveConverter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_for(self, seconds: float) -> LiveStats:
        """Run ``seconds`` (blocking the calling thread), then return the final stats; re-raises a worker error.

        Waits on the stop event without polling: a normal-priority thread that wakes up takes the GIL,
        and if a busy machine preempts it while it holds it, the real-time callbacks wait for it.
        """
        self._stop.wait(timeout=max(0.0, seconds))
        if self._error is not None:
            raise self._error
        return self.stats()

    @property
    def running(self) -> bool:
        return self._stream is not None and not self._stop.is_set()

    def set_monitor(self, on: bool) -> None:
        """Hear the converted voice (True) or play silence (False); conversion keeps running."""
        self.settings.monitor = bool(on)

    # -- the audio callbacks (PortAudio threads) -----------------------------------------------------
    def _input_callback(self, indata, frames, time_info, status) -> None:
        if self._rt_granted["input"] is None:
            self._rt_granted["input"] = self._ask_realtime(CALLBACK_PRIORITY)
        if status.input_overflow:
            self._cb_device_overflows += 1
        self._cb_frames += frames
        written = self.in_ring.write(indata[:, :1])
        if written < frames:
            self._cb_overflow_frames += frames - written

    def _output_callback(self, outdata, frames, time_info, status) -> None:
        if self._rt_granted["output"] is None:
            self._rt_granted["output"] = self._ask_realtime(CALLBACK_PRIORITY)
        if status.output_underflow:
            self._cb_device_underflows += 1
        if self._primed:
            now = time.monotonic()
            gap = now - self._cb_last_output_at
            if gap > self._cb_longest_gap:
                self._cb_longest_gap = gap
            self._cb_last_output_at = now
        mono = self._mono[:frames]
        got = self.out_ring.read_into(mono)
        if got < frames:
            mono[got:] = 0.0
            if self._primed:
                self._cb_missing += frames - got
                self._cb_underruns += 1
        elif not self._primed:
            self._primed = True
            self._cb_last_output_at = time.monotonic()
        if self.settings.monitor:
            outdata[:] = mono
        else:
            outdata.fill(0.0)

    # -- the worker ------------------------------------------------------------------------------
    def _ask_realtime(self, priority: int) -> bool:
        """Real-time priority for the calling thread, if the settings ask for it (one syscall)."""
        return bool(self.settings.realtime) and realtime.make_realtime(priority)

    def _work(self) -> None:
        self._rt_granted["worker"] = self._ask_realtime(WORKER_PRIORITY)
        if not self._rt_granted["worker"] and self.settings.realtime:
            log.info("live conversion: real-time priority refused; running at normal priority")
        try:
            while not self._stop.is_set():
                available = self.in_ring.readable()
                if available < self.settings.device_block:
                    time.sleep(0.002)
                    continue
                block = self.in_ring.peek(available).copy()  # feed the resampler as soon as input arrives
                self.in_ring.advance(block.shape[0])
                self.history_in.append(block)
                self._process(block[:, 0])
        except Exception as exc:  # surfaced through stats() and run_for()
            log.exception("live conversion stopped")
            self._error = exc
            self._stop.set()

    def _process(self, block: np.ndarray) -> None:
        conv = self.converter
        x = np.concatenate([self._pending, self._down.process(block)])
        outs = []
        while x.shape[0] >= conv.hop:
            start = time.perf_counter()
            outs.append(conv.process(x[: conv.hop]))
            spent = time.perf_counter() - start
            x = x[conv.hop :]
            self._recent[self._hops % RECENT_HOPS] = spent
            self._hops += 1
            self._gated += int(conv.timing.gated)
            self._inference_total += spent
            self._last_inference = spent
        self._pending = x
        if not outs:
            return
        y = self._up.process(np.concatenate(outs))[:, None]
        self.history_out.append(y)
        if self._first_write_at is None:
            self._first_write_at = self._cb_frames
            y = np.concatenate([np.zeros((self.margin, 1), dtype=np.float32), y])
        excess = self.out_ring.readable() + y.shape[0] - self.max_level
        if excess > 0:  # the output stalled or underran earlier: drop the oldest new frames, keep latency
            cut = min(excess, y.shape[0])
            y = y[cut:]
            self._dropped_excess += cut
        self.out_ring.write(y)

    # -- readouts --------------------------------------------------------------------------------
    def stats(self) -> LiveStats:
        hop_s = self.converter.hop / LIVE_SAMPLE_RATE if self.converter else 0.0
        n = min(self._hops, RECENT_HOPS)
        recent_max = float(self._recent[:n].max()) if n else 0.0
        headroom = 1.0 - recent_max / hop_s if hop_s else 1.0
        device_latency = sum(self._device_latency)
        internal = 0.0
        if self._first_write_at is not None and self.rate:
            internal = (
                (self._first_write_at + self.margin) / self.rate
                + (self.converter.delay + self._down.delay) / LIVE_SAMPLE_RATE
                + self._up.delay / self.rate
            )
        warning = None
        if self._error is not None:
            warning = f"stopped: {self._error}"
        elif n and headroom < HEADROOM_WARNING:
            warning = (
                f"conversion takes {recent_max * 1000:.0f} ms of each {hop_s * 1000:.0f} ms block: "
                "underruns are near; raise the block size or close other programs"
            )
        elif self._cb_underruns:
            warning = f"{self._cb_underruns} underrun(s): raise the block size"
        elif self._cb_device_underflows or self._cb_device_overflows:
            warning = (
                f"the sound device ran dry {self._cb_device_underflows} time(s) and overflowed "
                f"{self._cb_device_overflows} time(s) (longest pause {self._cb_longest_gap * 1000:.0f} ms): "
                "the machine is too busy; close other programs"
            )
        return LiveStats(
            running=self.running,
            seconds=(time.monotonic() - self._started_at) if self._started_at else 0.0,
            hops=self._hops,
            gated_hops=self._gated,
            underruns=self._cb_underruns,
            underrun_frames=self._cb_missing,
            device_underflows=self._cb_device_underflows,
            input_overflows=self._cb_overflow_frames,
            device_input_overflows=self._cb_device_overflows,
            longest_callback_gap_ms=self._cb_longest_gap * 1000,
            inference_ms_last=self._last_inference * 1000,
            inference_ms_mean=(self._inference_total / self._hops * 1000) if self._hops else 0.0,
            inference_ms_max_recent=recent_max * 1000,
            hop_ms=hop_s * 1000,
            headroom=headroom,
            latency_ms=(device_latency + internal) * 1000,
            device_latency_ms=device_latency * 1000,
            internal_latency_ms=internal * 1000,
            warning=warning,
            error=str(self._error) if self._error else None,
            realtime=dict(self._rt_granted),
        )

    def recent_output(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` of converted audio at the device rate, float32 [T] (for saving / views)."""
        return self.history_out.latest(int(seconds * self.rate))[:, 0]

    def recent_input(self, seconds: float) -> np.ndarray:
        return self.history_in.latest(int(seconds * self.rate))[:, 0]
