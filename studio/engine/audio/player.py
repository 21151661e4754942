"""Real-time playback: a PortAudio callback stream fed from a ring buffer by a producer thread.

Three parties (DESIGN.md's three clocks):

* the **audio callback** (PortAudio's thread) copies frames from the ``FrameRing`` into the device
  buffer, applies the volume in place, keeps a short history for the meter and counts underflows.
  It allocates no sample memory, takes no locks, never logs, never touches torch;
* the **producer thread** ("player-feed") reads the source (buffer, file in blocks, or live feeder),
  converts its rate to the device's with ``StreamResampler``, keeps the ring filled ahead of the
  playhead, applies seeks and loops, updates the level meter and watches the stream's health;
* **any other thread** (the GUI timer) calls the controls and reads the status properties, which are
  cheap snapshots.

Hand-offs between the producer and the callback go through single-writer attributes (ints, floats and
bools rebound atomically under the GIL; see ring.py for the ordering argument):

* ``_gen`` (producer) counts source discontinuities (seeks); ``_done_gen`` (producer) equals it when
  the source has ended and every frame is in the ring; ``_drained_gen`` (callback) equals it when the
  callback then found the ring empty;
* ``_primed_gen`` (producer) and ``_starved`` (callback): the callback plays only while they are
  equal. When the ring runs dry while the source is still producing, the callback counts an underflow
  and bumps ``_starved``, which closes the gate until the producer has buffered ``prebuffer_s`` again.
  A seek closes the gate from the producer side (``_primed_gen = -1``), so refilling after a seek is
  never counted as an underflow.

The playhead (``position_s``) is in SOURCE seconds, mapped from the ring's read counter through
markers ``(ring frame, source frame)`` that the producer appends at every discontinuity (start, seek,
loop jump), and corrected by the stream's output latency while playing.

Recovery: an output stream through PortAudio's ALSA ``pulse`` plugin dies (turns inactive) when the
sound server goes away or hiccups, and stops calling back while the sink is suspended. The producer
then opens a new stream on the same device with the same settings, retrying with backoff (0.1 s
doubling to 1 s) for up to ``recover_timeout_s``, and playback continues from the ring where it
stopped: the listener hears a pause, the playhead holds during it, and nothing is skipped. Each
reopen counts in ``recoveries`` (and so in ``underflows``) and is logged; only when reopening fails
does playback stop with an AudioDeviceError in ``last_error``.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from studio.engine.audio import devices
from studio.engine.audio.levels import LevelMeter, Levels
from studio.engine.audio.playback_sources import (
    BufferSource,
    FileSource,
    LiveFeeder,
    LiveSource,
    Source,
    fit_channels,
)
from studio.engine.audio.resample import StreamResampler
from studio.engine.audio.ring import FrameRing, HistoryRing
from studio.engine.audio.stream_loops import reopen_attempts, stream_settings, wait_while
from studio.engine.audio.streams import (
    DEFAULT_RECOVER_TIMEOUT_S,
    STALL_TIMEOUT_S,
    check_recover_timeout,
    close_quietly,
    open_started,
)
from studio.engine.audio.streams import latency_s as stream_latency_s

log = logging.getLogger(__name__)

DEFAULT_BLOCKSIZE = 512  # frames per callback; 128–512 measured fine here, 512 leaves headroom under load
DEFAULT_LATENCY = "high"  # PortAudio's suggested latency; 'high' is robust on a busy machine
DEFAULT_AHEAD_S = 0.5  # how far the producer keeps buffered seekable sources ahead of the playhead
DEFAULT_RING_S = 2.0  # ring capacity; live streams may fill all of it
DEFAULT_PREBUFFER_S = 0.1  # what must be buffered before (re)starting after a start, seek or underflow
SOURCE_CHUNK_S = 0.05  # source seconds read per producer step
PRODUCER_PERIOD_S = 0.01  # the producer wakes at least this often


class PlayerState(enum.StrEnum):
    STOPPED = "stopped"
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"


@dataclass(frozen=True)
class _Marker:
    ring_frame: int  # absolute ring position of the first frame of a segment
    source_frame: int  # the source frame it came from
    is_seek: bool  # a user seek (the playhead must not show frames before it)


class Player:
    """Plays buffers, files and live streams on one output device.

    ``device``: a name, an index or None (the default output); names that are gone fall back to the
    default (logged). ``sample_rate``: the DEVICE rate in Hz (None: the device's preferred rate, 48000
    for sound-server devices); sources at other rates are converted in the producer thread.
    ``channels``: output channels (None: the source's, capped at what the device has).
    ``recover_timeout_s``: how long to keep reopening a stream that died before giving up (0: never
    reopen; playback then stops at the first stream failure).

    All methods are thread-safe; status properties are cheap enough for a 60 Hz GUI timer.
    """

    def __init__(
        self,
        device: devices.DeviceSpec = None,
        sample_rate: int | None = None,
        *,
        channels: int | None = None,
        blocksize: int = DEFAULT_BLOCKSIZE,
        latency: str | float = DEFAULT_LATENCY,
        ahead_s: float = DEFAULT_AHEAD_S,
        ring_s: float = DEFAULT_RING_S,
        prebuffer_s: float = DEFAULT_PREBUFFER_S,
        recover_timeout_s: float = DEFAULT_RECOVER_TIMEOUT_S,
    ) -> None:
        self.device_spec = device
        self.requested_rate = sample_rate
        self.requested_channels = channels
        self.blocksize = int(blocksize)
        self.latency = latency
        self.ahead_s = float(ahead_s)
        self.ring_s = max(float(ring_s), 2 * self.ahead_s, 0.2)
        self.prebuffer_s = float(prebuffer_s)
        self.recover_timeout_s = check_recover_timeout(recover_timeout_s)
        self._lock = threading.RLock()
        self._state = PlayerState.STOPPED
        self._last_error: Exception | None = None
        self._volume = 1.0
        self._stream = None
        self._thread: threading.Thread | None = None
        self._puller: threading.Thread | None = None
        self._quit = threading.Event()
        self._wake = threading.Event()
        self._source: Source | None = None
        self._device_info: devices.DeviceInfo | None = None
        self.device_rate = 0
        self.out_channels = 0
        self._ring: FrameRing | None = None
        self._history: HistoryRing | None = None
        self._meter: LevelMeter | None = None
        self._markers: list[_Marker] = []
        self._loop: tuple[int, int] | None = None
        self._seek_request: int | None = None
        self._reposition = False
        self._final_position = 0.0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._gen = 0
        self._done_gen = -1
        self._drained_gen = -2
        self._primed_gen = -1
        self._starved = 0
        self._device_underflows = 0
        self._callbacks = 0
        self._paused = False
        self._recoveries = 0
        self._lost_since: float | None = None  # when the stream died, until a new one calls back
        self._callback_error: Exception | None = None

    # ------------------------------------------------------------------------------------ sources
    def play_buffer(self, audio: np.ndarray, sample_rate: int) -> None:
        """Play ``audio`` (float ``[T]`` or ``[T, C]``, full scale 1.0) recorded at ``sample_rate`` Hz."""
        self._start(BufferSource(audio, sample_rate))

    def play_file(self, path: str | os.PathLike) -> None:
        """Stream a sound file from disk (blocks, never the whole file). Raises files.AudioFileError
        for a missing or unreadable file, AudioDeviceError when the device cannot play."""
        source = FileSource(path)
        try:
            self._start(source)
        except BaseException:
            source.close()
            raise

    def play_stream(
        self, sample_rate: int, blocks: Iterable[np.ndarray] | None = None, *, channels: int = 1
    ) -> LiveFeeder:
        """Play audio that is still being produced, at ``sample_rate`` Hz with ``channels`` channels.

        Without ``blocks``: returns a ``LiveFeeder``; call ``push(block)`` per block and ``finish()``
        at the end. With ``blocks`` (an iterator, e.g. a model's generator): a helper thread pulls
        from it and feeds the player; the feeder is returned too (``closed`` tells a generator to stop).
        Playback starts once ``prebuffer_s`` is buffered and pauses to rebuffer (counting an underflow)
        whenever the producer falls behind real time.
        """
        feeder = LiveFeeder(sample_rate, channels)
        self._start(LiveSource(feeder))
        if blocks is not None:
            self._puller = threading.Thread(
                target=self._pull, args=(iter(blocks), feeder), name="player-pull", daemon=True
            )
            self._puller.start()
        return feeder

    def _pull(self, iterator, feeder: LiveFeeder) -> None:
        try:
            for block in iterator:
                if feeder.closed:
                    break
                feeder.push(block)
        except Exception as exc:  # the generator failed: play what came, report the error
            log.exception("the audio stream's generator failed")
            self._set_error(exc)
        finally:
            close = getattr(iterator, "close", None)
            if feeder.closed and close is not None:
                try:
                    close()
                except Exception:  # pragma: no cover - a generator that fails to close
                    log.debug("closing the stream generator failed", exc_info=True)
            feeder.finish()
            self._wake.set()

    # ----------------------------------------------------------------------------------- lifecycle
    def _start(self, source: Source) -> None:
        self.stop()
        sd = devices.sd()
        info = devices.resolve_device(self.device_spec, "output")
        rate = int(self.requested_rate or info.preferred_rate)
        channels = self.requested_channels or min(source.channels, max(info.max_output_channels, 1))
        devices.validate_output(info, rate, channels)
        ring = FrameRing(int(self.ring_s * rate), channels)
        with self._lock:
            self._device_info = info
            self.device_rate = rate
            self.out_channels = channels
            self._source = source
            self._ring = ring
            self._history = HistoryRing(rate // 2, channels)
            self._meter = LevelMeter(rate)
            self._markers = [_Marker(0, 0, True)]
            self._loop = None
            self._seek_request = None
            self._reposition = False
            self._final_position = 0.0
            self._last_error = None
            self._reset_counters()
            self._resampler = StreamResampler(source.sample_rate, rate, channels)
            self._pending: np.ndarray | None = None
            self._ended = False
            self._meter_pos = 0
            self._drained_since: float | None = None
            self._last_callbacks = 0
            self._last_progress = time.monotonic()
            self._quit.clear()
            try:
                self._stream = sd.OutputStream(**self._stream_settings())
            except (sd.PortAudioError, ValueError) as exc:
                self._stream = None
                self._source = None
                raise devices.AudioDeviceError(
                    f"cannot open output device {info.name!r} at {rate} Hz, {channels} channel(s): {exc}; "
                    f"try another device or rate (`studio devices` lists them)"
                ) from exc
            self._abort = sd.CallbackAbort
            try:
                self._stream.start()
            except sd.PortAudioError as exc:
                stream, self._stream, self._source = self._stream, None, None
                stream.close()
                raise devices.AudioDeviceError(
                    f"cannot start playback on {info.name!r} at {rate} Hz: {exc}; "
                    "try another device (`studio devices` lists them)"
                ) from exc
            self._state = PlayerState.PLAYING
            # The callback plays silence until the producer has primed the ring.
            self._thread = threading.Thread(target=self._produce, name="player-feed", daemon=True)
            self._thread.start()
        log.info(
            "playing %s at %d Hz on %r (%d Hz, %d ch, latency %.0f ms)",
            type(source).__name__,
            source.sample_rate,
            info.name,
            rate,
            channels,
            self.latency_s * 1000,
        )

    def _stream_settings(self) -> dict:
        """Keyword arguments for ``sd.OutputStream`` on the current device (start and recovery)."""
        return stream_settings(
            self._device_info.index, self.device_rate, self.out_channels, self.blocksize, self.latency, self._callback
        )

    def stop(self) -> None:
        """Stop playback and release the device (idempotent). The playhead keeps its last value."""
        with self._lock:
            if self._thread is None and self._stream is None:
                if self._state != PlayerState.STOPPED:
                    self._state = PlayerState.STOPPED
                return
            self._final_position = self._compute_position()
            self._quit.set()
            self._wake.set()
            thread, self._thread = self._thread, None
            stream, self._stream = self._stream, None
            source, puller, self._puller = self._source, self._puller, None
            self._state = PlayerState.STOPPED
        # Join and close without the lock: the producer thread takes it briefly in every step.
        if source is not None and source.live:
            source.close()  # tells a generator feeding it to stop
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        close_quietly(stream, what="output stream")
        if source is not None:
            source.close()
        if puller is not None:
            puller.join(timeout=0.5)

    def close(self) -> None:
        """Same as ``stop``; for ``with`` blocks and owners that close resources."""
        self.stop()

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until playback has finished or stopped; True if it did within ``timeout`` seconds."""
        return wait_while(lambda: self.state in (PlayerState.PLAYING, PlayerState.PAUSED), timeout)

    # ------------------------------------------------------------------------------------ controls
    def pause(self) -> None:
        """Hold the playhead; the device plays silence. No effect unless playing."""
        with self._lock:
            if self._state == PlayerState.PLAYING:
                self._paused = True
                self._state = PlayerState.PAUSED

    def resume(self) -> None:
        """Continue after ``pause``. No effect unless paused."""
        with self._lock:
            if self._state == PlayerState.PAUSED:
                self._paused = False
                self._state = PlayerState.PLAYING

    def seek(self, seconds: float) -> None:
        """Move the playhead to ``seconds`` of the source (buffer and file sources). Seeking a finished
        source plays again from there; a paused player stays paused."""
        with self._lock:
            source = self._source
            if source is None or self._stream is None:
                raise RuntimeError("nothing is playing to seek in; start playback (play_buffer/play_file) first")
            if not source.seekable:
                raise ValueError("a live stream cannot seek")
            frame = int(round(max(float(seconds), 0.0) * source.sample_rate))
            frame = min(frame, source.frames if source.frames is not None else frame)
            self._seek_request = frame
            if self._state == PlayerState.FINISHED:
                self._state = PlayerState.PLAYING
            self._wake.set()

    def set_loop(self, start_s: float | None, end_s: float | None = None) -> None:
        """Loop ``[start_s, end_s)`` of the source (buffer and file sources); ``set_loop(None)`` turns
        looping off. The loop applies when the playhead reaches ``end_s``; playback continues from
        the current playhead (already-buffered audio is re-read so the change is heard at once)."""
        with self._lock:
            source = self._source
            if start_s is None:
                self._loop = None
            else:
                if source is None:
                    raise RuntimeError("nothing is loaded; start playback before setting a loop")
                if not source.seekable:
                    raise ValueError("a live stream cannot loop")
                if end_s is None or not 0.0 <= start_s < end_s:
                    raise ValueError(f"a loop needs 0 <= start < end, got start={start_s}, end={end_s}")
                start = int(round(start_s * source.sample_rate))
                end = int(round(end_s * source.sample_rate))
                if source.frames is not None:
                    end = min(end, source.frames)
                if end - start < 16:
                    raise ValueError(f"loop [{start_s}, {end_s}) s is empty or too short for this source")
                self._loop = (start, end)
            if source is not None and source.seekable and self._stream is not None:
                self._reposition = True
                self._wake.set()

    @property
    def loop(self) -> tuple[float, float] | None:
        """The loop in source seconds, or None."""
        with self._lock:
            if self._loop is None or self._source is None:
                return None
            sr = self._source.sample_rate
            return (self._loop[0] / sr, self._loop[1] / sr)

    @property
    def volume(self) -> float:
        """Linear gain applied in the callback (0.0 … 4.0; 1.0 = unchanged)."""
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 4.0:
            raise ValueError(f"volume must be within 0.0 … 4.0, got {value}")
        self._volume = value

    def set_volume(self, value: float) -> None:
        self.volume = value

    # ------------------------------------------------------------------------------------ status
    @property
    def state(self) -> PlayerState:
        """STOPPED, PLAYING, PAUSED or FINISHED (any thread; FINISHED is set by the producer thread)."""
        return self._state

    @property
    def last_error(self) -> Exception | None:
        """The error that stopped playback or cut a source short (None when all went well)."""
        return self._last_error

    @property
    def underflows(self) -> int:
        """Times the device was short of audio: ring starvations while the source was still producing,
        PortAudio's output_underflow flags, and stream recoveries (the stream died and was reopened)."""
        return self._starved + self._device_underflows + self._recoveries

    @property
    def recoveries(self) -> int:
        """Times the output stream died and was reopened (see the module doc)."""
        return self._recoveries

    @property
    def ring_underflows(self) -> int:
        return self._starved

    @property
    def device_underflows(self) -> int:
        return self._device_underflows

    @property
    def latency_s(self) -> float:
        """The output stream's latency in seconds (0.0 while no stream is open)."""
        return stream_latency_s(self._stream)

    @property
    def buffered_s(self) -> float:
        """Audio waiting in the ring, in device seconds."""
        ring = self._ring
        return ring.readable() / self.device_rate if ring is not None and self.device_rate else 0.0

    @property
    def duration_s(self) -> float | None:
        """Length of the source in seconds (None for a live stream until it has finished)."""
        source = self._source
        if source is None:
            return None
        if source.frames is not None:
            return source.frames / source.sample_rate
        if source.live and source.exhausted:
            return source.tell() / source.sample_rate
        return None

    @property
    def source_sample_rate(self) -> int | None:
        source = self._source
        return None if source is None else source.sample_rate

    @property
    def device_name(self) -> str | None:
        info = self._device_info
        return None if info is None else info.name

    @property
    def output_level(self) -> Levels:
        """Peak/RMS (dBFS, after volume) of the last ~50 ms played, with peak hold and clip flag."""
        meter = self._meter
        return meter.levels() if meter is not None else Levels()

    @property
    def position_s(self) -> float:
        """The playhead in SOURCE seconds: frames handed to the device minus the output latency."""
        with self._lock:
            if self._stream is None:
                return self._final_position
            return self._compute_position()

    def _compute_position(self) -> float:
        source, ring = self._source, self._ring
        if source is None or ring is None:
            return self._final_position
        if self._seek_request is not None:  # asked for, not yet applied by the producer
            return self._seek_request / source.sample_rate
        read = ring.read_pos
        markers = self._markers
        last_seek = max((m for m in markers if m.is_seek), key=lambda m: m.ring_frame)
        if read < last_seek.ring_frame:  # a seek not yet taken up by the callback
            return last_seek.source_frame / source.sample_rate
        if self._state == PlayerState.PLAYING:
            read = max(read - int(self.latency_s * self.device_rate), last_seek.ring_frame)
        marker = last_seek
        for m in markers:
            if marker.ring_frame <= m.ring_frame <= read:
                marker = m
        ratio = source.sample_rate / self.device_rate
        frame = marker.source_frame + (read - marker.ring_frame) * ratio
        frame = min(frame, source.frames if source.frames is not None else source.tell())
        return frame / source.sample_rate

    # ------------------------------------------------------------------------------------ callback
    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's thread: copy, scale, count. No allocation of sample memory, no locks, no logs."""
        try:
            if status.output_underflow:
                self._device_underflows += 1
            ring = self._ring
            if self._paused or self._primed_gen != self._starved:
                ring.apply_flush()
                outdata.fill(0.0)
            else:
                n = ring.read_into(outdata)
                if n < frames:
                    outdata[n:].fill(0.0)
                    gen = self._gen
                    if self._done_gen == gen:
                        if ring.readable() == 0:
                            self._drained_gen = gen
                    else:
                        self._starved += 1
                volume = self._volume
                if volume != 1.0:
                    outdata *= volume
            self._history.append(outdata)
            self._callbacks += 1
        except Exception as exc:  # never let the stream die silently
            self._callback_error = exc
            self._last_error = exc
            raise self._abort from exc

    # ------------------------------------------------------------------------------------ producer
    def _produce(self) -> None:
        """The producer thread: fill the ring, apply seeks/loops, meter, watch the stream."""
        try:
            while not self._quit.is_set():
                self._apply_requests()
                self._fill()
                self._prime()
                self._meter_update()
                if self._watch():
                    break
                self._wake.wait(PRODUCER_PERIOD_S)
                self._wake.clear()
        except Exception as exc:
            if self._quit.is_set():  # stop() closed the stream under us: not an error
                return
            log.exception("the player's producer thread failed")
            self._set_error(exc)
            self._stop_from_producer()

    def _apply_requests(self) -> None:
        with self._lock:
            seek, self._seek_request = self._seek_request, None
            reposition, self._reposition = self._reposition, False
            if seek is None and reposition:
                seek = self._source_frame_at(self._ring.read_pos)
        if seek is None:
            return
        ring, source = self._ring, self._source
        self._primed_gen = -1  # close the gate first: refilling is not an underflow
        self._gen += 1
        ring.request_flush()
        self._pending = None
        self._ended = False
        self._drained_since = None
        source.seek(seek)
        self._resampler.reset()
        with self._lock:
            self._markers = [*self._markers[-255:], _Marker(ring.write_pos, source.tell(), True)]

    def _source_frame_at(self, ring_frame: int) -> int:
        source = self._source
        marker = self._markers[0]
        for m in self._markers:
            if m.ring_frame <= ring_frame and m.ring_frame >= marker.ring_frame:
                marker = m
        frame = marker.source_frame + (ring_frame - marker.ring_frame) * source.sample_rate / self.device_rate
        return int(round(frame))

    def _queue(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        self._pending = block if self._pending is None else np.concatenate([self._pending, block])

    def _fill(self) -> None:
        ring, source = self._ring, self._source
        target = ring.capacity if source.live else int(self.ahead_s * self.device_rate)
        chunk = max(256, int(SOURCE_CHUNK_S * source.sample_rate))
        while not self._quit.is_set():
            if self._pending is not None:
                n = ring.write(self._pending)
                self._pending = self._pending[n:] if n < self._pending.shape[0] else None
                if self._pending is not None:
                    return  # the ring is full
            if self._ended:
                self._done_gen = self._gen  # every frame is in the ring
                return
            if ring.readable() >= target:
                return
            cursor = source.tell()
            loop = self._loop
            want = min(chunk, loop[1] - cursor) if loop is not None and cursor < loop[1] else chunk
            try:
                block = source.read(want)
            except Exception as exc:  # a file damaged half way: play what we have, report it
                self._set_error(exc)
                block = np.zeros((0, source.channels), dtype=np.float32)
                self._finish_source()
                continue
            if block.shape[0]:
                self._queue(self._resampler.process(fit_channels(block, ring.channels)))
                if loop is not None and source.tell() >= loop[1] and cursor < loop[1]:
                    self._loop_jump(loop[0])
                continue
            if source.exhausted:
                self._finish_source()
                continue
            return  # a live source with nothing queued yet

    def _finish_source(self) -> None:
        self._queue(self._resampler.process(np.zeros((0, self._ring.channels), np.float32), last=True))
        self._ended = True

    def _loop_jump(self, start: int) -> None:
        ring = self._ring
        self._queue(self._resampler.process(np.zeros((0, ring.channels), np.float32), last=True))
        self._resampler.reset()
        self._source.seek(start)
        pending = 0 if self._pending is None else self._pending.shape[0]
        with self._lock:
            self._markers = [*self._markers[-255:], _Marker(ring.write_pos + pending, start, False)]

    def _prime(self) -> None:
        if self._primed_gen == self._starved:
            return
        ring = self._ring
        need = min(int(self.prebuffer_s * self.device_rate), ring.capacity)
        if ring.readable() >= need or self._done_gen == self._gen:
            self._primed_gen = self._starved

    def _meter_update(self) -> None:
        history = self._history
        start = max(self._meter_pos, history.write_pos - history.capacity)
        self._meter_pos = history.write_pos
        fresh = history.since(start, self._meter_pos)
        if fresh.shape[0]:
            self._meter.update(fresh)

    def _watch(self) -> bool:
        """Check for the end of playback and for a dead stream; True when the producer should exit."""
        now = time.monotonic()
        stream = self._stream
        if self._callbacks != self._last_callbacks:
            self._last_callbacks = self._callbacks
            self._last_progress = now
            self._lost_since = None  # a (reopened) stream is calling back
        if stream is None:
            return True
        if self._callback_error is not None and not stream.active:  # our callback failed: a bug, stop
            self._stop_from_producer()
            return True
        state = self._state
        if state in (PlayerState.PLAYING, PlayerState.PAUSED) and (
            not stream.active or now - self._last_progress > STALL_TIMEOUT_S
        ):
            what = "stopped" if not stream.active else f"stopped calling back for {STALL_TIMEOUT_S:g} s"
            problem = self._recover(what)
            if problem is None:
                return False
            if self._quit.is_set():  # stop() was called while recovering
                return True
            self._set_error(
                devices.AudioDeviceError(
                    f"the output device {self.device_name!r} {what} and could not be reopened within "
                    f"{self.recover_timeout_s:g} s ({problem}; unplugged, taken by another program, or the "
                    "sound server stopped?); choose another device and play again"
                )
            )
            self._stop_from_producer()
            return True
        if state == PlayerState.PLAYING and self._drained_gen == self._gen:
            if self._drained_since is None:
                self._drained_since = now
            elif now - self._drained_since >= self.latency_s + 2 * self.blocksize / self.device_rate:
                with self._lock:
                    if self._state == PlayerState.PLAYING and self._drained_gen == self._gen:
                        self._state = PlayerState.FINISHED
        return False

    def _recover(self, what: str) -> str | None:
        """Producer thread: replace a dead output stream; None when a new one runs, else what failed.

        The dead stream is closed first. A reopened stream that never calls back is caught by the next
        ``_watch`` and replaced again, until ``recover_timeout_s`` after the first loss.
        """
        sd = devices.sd()
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
            log.warning("the output stream on %r %s; reopening it", self.device_name, what)
        deadline = self._lost_since + self.recover_timeout_s
        with self._lock:
            dead = self._stream
        close_quietly(dead, what="dead output stream")
        problem = "no time left to reopen it"
        for attempt in reopen_attempts(self._quit, deadline):
            with self._lock:
                if self._quit.is_set() or self._stream is not dead:
                    return "stopped"
                try:
                    stream = open_started(sd.OutputStream, **self._stream_settings())
                except (sd.PortAudioError, ValueError) as exc:
                    problem = f"reopening failed: {exc}"
                    log.info("reopening %r (attempt %d) failed: %s", self.device_name, attempt, exc)
                else:
                    self._stream = stream
                    self._recoveries += 1
                    self._last_progress = time.monotonic()
                    log.warning(
                        "the output stream on %r was reopened after %.2f s (recovery %d)",
                        self.device_name,
                        time.monotonic() - self._lost_since,
                        self._recoveries,
                    )
                    return None
        return "stopped" if self._quit.is_set() else problem

    def _stop_from_producer(self) -> None:
        """Close the stream from the producer thread after an error (the thread then exits)."""
        with self._lock:
            self._final_position = self._compute_position()
            self._quit.set()
            stream, self._stream = self._stream, None
            close_quietly(stream, what="failed output stream")
            if self._source is not None:
                self._source.close()
            self._thread = None
            self._puller = None
            self._state = PlayerState.STOPPED

    def _set_error(self, exc: Exception) -> None:
        if self._last_error is None:
            self._last_error = exc
        log.warning("playback problem: %s", exc)
