"""Live conversion: microphone in, converted voice out, through ring buffers and a worker thread.

Three parts, as DESIGN.md's clocks ask:

* the **audio callbacks** (PortAudio's threads; an input stream and an output stream — a full-duplex
  stream through ALSA's pulse plugin stalled and burst on this kind of machine) copy the input block
  into ``in_ring`` and the next output block from ``out_ring``; frames the worker has not delivered
  are played as silence and counted as an underrun. No conversion, no allocation, no locks.
* the **worker thread** ("convert-live") takes input hops from ``in_ring``, resamples them to 16 kHz,
  runs the :class:`BlockConverter` (WORLD analysis, mapping, synthesis), resamples back to the device
  rate and writes ``out_ring``. It times every hop (inference time, headroom).
* the GUI or CLI polls :meth:`LiveConverter.stats` (a snapshot; safe from any thread).

Latency: the output ring starts empty (the callback plays silence, uncounted); the worker puts
``margin`` frames of silence (half a hop of processing time + one device block + a safety margin)
before its first converted block. Every input frame then leaves a fixed number of frames later: the
frames the input had delivered when the first block arrived (one hop, the resamplers' delay, the
first processing) + ``margin`` + the converter's look-ahead, plus the device latencies PortAudio
reports. If the output ever holds more than ``margin`` + two hops (the input's clock running faster
than the output's), the excess is dropped, so latency stays bounded.
After an underrun the worker drops as many converted frames as were missed, so latency never creeps.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from studio.engine.audio import devices
from studio.engine.audio.resample import StreamResampler
from studio.engine.audio.ring import FrameRing, HistoryRing
from studio.engine.convert.pipeline import ConversionTarget
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
HEADROOM_WARNING = 0.25  # warn when the slowest recent hop left less than 25 % of the hop's time
RECENT_HOPS = 50
HISTORY_S = 30.0


@dataclass
class LiveSettings:
    """Settings of a live session (the GUI's pickers and sliders map onto these).

    input_device / output_device: name, index or None (the defaults); sample_rate: the device rate
    (None: the output device's preferred rate, 48 kHz on sound servers); hop_ms: conversion block
    (longer = more headroom, more latency); device_block: frames per audio callback; latency: PortAudio
    latency hint ("low", "high" or seconds); gate_db: noise gate threshold (None = off); monitor:
    play the converted voice (off: converted audio is still made and kept in the history, silence
    is played); safety_ms: extra prefill against processing-time jitter.
    """

    target: ConversionTarget = field(default_factory=ConversionTarget)
    input_device: devices.DeviceSpec = None
    output_device: devices.DeviceSpec = None
    sample_rate: int | None = None
    hop_ms: float = DEFAULT_HOP_MS
    lookahead_ms: float = DEFAULT_LOOKAHEAD_MS
    device_block: int = DEFAULT_DEVICE_BLOCK
    latency: str | float = "low"
    gate_db: float | None = DEFAULT_GATE_DB
    monitor: bool = True
    safety_ms: float = DEFAULT_SAFETY_MS
    output_channels: int = 2


@dataclass(frozen=True)
class LiveStats:
    """A snapshot for readouts. Times in milliseconds; ``headroom`` is 1 − (slowest recent hop / hop length)."""

    running: bool
    seconds: float
    hops: int
    gated_hops: int
    underruns: int
    underrun_frames: int
    device_underflows: int
    input_overflows: int
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
        self._cb_overflow_frames = 0
        self._primed = False
        self._dropped_excess = 0
        self._dropped = 0  # worker: converted frames dropped to make up for missed ones
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
        s = self.settings
        sd = devices.sd()
        out_info = devices.validate_output(s.output_device, s.sample_rate, s.output_channels)
        rate = int(s.sample_rate or out_info.preferred_rate)
        in_info = devices.validate_input(s.input_device, rate, 1)
        self.rate = rate
        self.converter = BlockConverter(
            s.target, sample_rate=LIVE_SAMPLE_RATE, hop_ms=s.hop_ms, lookahead_ms=s.lookahead_ms, gate_db=s.gate_db
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
        self._down = StreamResampler(rate, LIVE_SAMPLE_RATE)
        self._up = StreamResampler(LIVE_SAMPLE_RATE, rate)
        self._pending = np.zeros(0, dtype=np.float32)
        self._stop.clear()
        try:
            self._in_stream = sd.InputStream(
                device=in_info.index, samplerate=rate, blocksize=s.device_block, channels=1,
                dtype="float32", latency=s.latency, callback=self._input_callback,
            )
            self._stream = sd.OutputStream(
                device=out_info.index, samplerate=rate, blocksize=s.device_block, channels=s.output_channels,
                dtype="float32", latency=s.latency, callback=self._output_callback,
            )
            self._device_latency = (float(self._in_stream.latency), float(self._stream.latency))
        except (sd.PortAudioError, ValueError) as exc:
            raise devices.AudioDeviceError(
                f"cannot open {in_info.name!r} → {out_info.name!r} at {rate} Hz for live conversion: {exc}; "
                "try other devices or a larger block (run `studio devices`)"
            ) from exc
        self._worker = threading.Thread(target=self._work, name="convert-live", daemon=True)
        self._worker.start()
        self._started_at = time.monotonic()
        self._stream.start()
        self._in_stream.start()
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
                    stream.close()
                finally:
                    setattr(self, name, None)
        if self._worker is not None:
            self._worker.join(timeout=5)
            self._worker = None

    def __enter__(self) -> LiveConverter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_for(self, seconds: float, poll_s: float = 0.25) -> LiveStats:
        """Run ``seconds`` (blocking the calling thread), then return the final stats; re-raises a worker error."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stop.is_set():
            time.sleep(min(poll_s, max(0.0, end - time.monotonic())))
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
        self._cb_frames += frames
        written = self.in_ring.write(indata[:, :1])
        if written < frames:
            self._cb_overflow_frames += frames - written

    def _output_callback(self, outdata, frames, time_info, status) -> None:
        if status.output_underflow:
            self._cb_device_underflows += 1
        mono = self._mono[:frames]
        got = self.out_ring.read_into(mono)
        if got < frames:
            mono[got:] = 0.0
            if self._primed:
                self._cb_missing += frames - got
                self._cb_underruns += 1
        elif not self._primed:
            self._primed = True
        if self.settings.monitor:
            outdata[:] = mono
        else:
            outdata.fill(0.0)

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
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
        owed = self._cb_missing - self._dropped
        if owed > 0:
            drop = min(owed, y.shape[0])
            self._dropped += drop
            y = y[drop:]
        excess = self.out_ring.readable() + y.shape[0] - (self.margin + 3 * self.hop_in)
        if self._first_write_at is not None and excess > 0 and self._hops > 4:
            y = y[min(excess, y.shape[0]) :]
            self._dropped_excess += min(excess, y.shape[0])
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
            internal = (self._first_write_at + self.margin) / self.rate + self.converter.delay / LIVE_SAMPLE_RATE
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
        return LiveStats(
            running=self.running,
            seconds=(time.monotonic() - self._started_at) if self._started_at else 0.0,
            hops=self._hops,
            gated_hops=self._gated,
            underruns=self._cb_underruns,
            underrun_frames=self._cb_missing,
            device_underflows=self._cb_device_underflows,
            input_overflows=self._cb_overflow_frames,
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
        )

    def recent_output(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` of converted audio at the device rate, float32 [T] (for saving / views)."""
        return self.history_out.latest(int(seconds * self.rate))[:, 0]

    def recent_input(self, seconds: float) -> np.ndarray:
        return self.history_in.latest(int(seconds * self.rate))[:, 0]
