"""Recording to a file of any length: a PortAudio input callback → ring → writer thread → disk.

* The **callback** (PortAudio's thread) only copies ``indata`` into a preallocated ``FrameRing`` and
  counts overflows (frames the ring had no room for, and PortAudio's ``input_overflow`` flags).
* The **writer thread** ("recorder-write") drains the ring every ~50 ms, appends to the file, feeds
  the level meter and the recent-audio history, and watches the stream's health.

Crash safety (measured here, libsndfile 1.2.2 via soundfile 0.14, by killing a writer with SIGKILL):

* libsndfile writes samples with plain ``write(2)``: once ``SoundFile.write`` returns they are in the
  kernel's page cache and survive the death of the process (not a power cut; see ``sync_interval_s``).
* The header is the problem: a WAV's RIFF and ``data`` sizes stay 0 until ``close()``. libsndfile itself
  then falls back to the file length, but Python's ``wave``, ``scipy.io.wavfile`` and many editors
  refuse such a file. ``SoundFile.flush()`` is only ``sf_write_sync`` (an fsync) and does NOT fix it.
* libsndfile's ``SFC_UPDATE_HEADER_NOW`` command rewrites the header in place with the current length.
  After SIGKILL, WAV, W64, RF64, CAF and AIFF files updated that way read back in full in soundfile,
  ``wave``, ``scipy`` and ``sox`` (without it, CAF and RF64 read back as 0 frames).
* FLAC and OGG cannot be made readable after a kill (libsndfile reports a bogus length for a FLAC
  without its final STREAMINFO, and an OGG read back 0 frames). Recording to those formats therefore
  goes to ``<path>.partial.wav`` first (crash safe), which ``stop()`` converts and removes.

So the writer updates the header after every drain that wrote audio, at most every
``header_interval_s`` (0.1 s): a kill loses at most that plus one drain period (~0.15 s), and the file
always opens. ``sync_interval_s`` additionally fsyncs every few seconds against power loss.

Recovery from a dead stream (measured here through PortAudio 19.6's ALSA ``pulse`` plugin): when the
sound server goes away or hiccups under load, PortAudio's capture thread ends with
``PaAlsaStream_WaitForFrames failed`` and the stream turns inactive; a suspended source just stops
calling back. The device index stays valid (PortAudio lists devices once), and a new stream on it
works as soon as the server is back. So the writer thread, on a stream that is inactive or silent for
``STALL_TIMEOUT_S``, writes out what the old stream captured, closes it and opens a new one with the
same settings, retrying with backoff (0.1 s doubling to 1 s) for up to ``recover_timeout_s``; only when
that fails does the recording end with an AudioDeviceError in ``last_error``.

The file's timeline stays honest: the span the device lost is written as SILENCE, so a position in
the file is still wall-clock time since ``start()`` (what a take laid against other tracks needs).
Each such span is listed in ``gaps`` (``RecordingGap``: where in the file, how long), counted once in
``overflows`` and its frames in ``dropped_frames``, and logged as a warning. The span is measured with
the streams' ADC timestamps (``inputBufferAdcTime``: end of the old stream's last block to the start
of the new stream's first one), falling back to ``time.monotonic`` at the callbacks when the host
API gives no usable timestamps.

The same holds when the writer falls behind (a stalled disk) and the ring fills: the callback notes
where in the stream it had to drop frames and how many, and the writer puts that many frames of
silence at that point of the file (a ``RecordingGap`` with reason ``RING_FULL``), so what follows
stays at its wall-clock position. Each such episode (however many blocks it drops) counts once in
``overflows`` and its frames in ``dropped_frames``.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from studio.engine.audio import devices
from studio.engine.audio.levels import LevelMeter, Levels
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

SFC_UPDATE_HEADER_NOW = 0x1060  # libsndfile's sf_command code (sndfile.h)
HEADER_UPDATABLE_FORMATS = ("WAV", "WAVEX", "W64", "RF64", "CAF", "AIFF")
DEFAULT_BLOCKSIZE = 0  # let PortAudio choose: fewest callbacks, lowest risk of overflow
DEFAULT_LATENCY = "high"
DEFAULT_RING_S = 5.0  # the writer may stall this long (slow disk, busy machine) before audio is lost
DEFAULT_HISTORY_S = 10.0  # how much ``recent()`` can return
WRITER_PERIOD_S = 0.05
DEFAULT_HEADER_INTERVAL_S = 0.1
DEFAULT_SYNC_INTERVAL_S = 5.0


RING_FULL = "the writer fell behind (ring full)"


@dataclass(frozen=True)
class RecordingGap:
    """A span lost to the recording (the input stream was reopened, or the ring was full while the
    writer fell behind) that the file holds as silence (see the module doc).

    ``start_s``: where the silence begins in the file, seconds. ``duration_s``: its length, seconds.
    ``reason``: what happened to the stream, for logs and status lines.
    """

    start_s: float
    duration_s: float
    reason: str


class RecorderState(enum.StrEnum):
    IDLE = "idle"  # made, not started
    RECORDING = "recording"
    STOPPED = "stopped"  # finished (by stop(), max_seconds, or an error: see last_error)


def _major_format(path: str) -> str:
    import soundfile

    ext = os.path.splitext(path)[1].lstrip(".").upper()
    if not ext:
        raise ValueError(f"cannot tell the format of {path!r}: give it an extension such as .wav or .flac")
    formats = soundfile.available_formats()
    aliases = {"OGA": "OGG", "OPUS": "OGG", "AIF": "AIFF", "AIFC": "AIFF"}
    major = aliases.get(ext, ext)
    if major not in formats:
        raise ValueError(f"cannot record to {path!r}: .{ext.lower()} is not a format libsndfile writes (use .wav)")
    return major


def update_header(sound_file) -> bool:
    """Ask libsndfile to rewrite ``sound_file``'s header with the frames written so far.

    Uses soundfile's binding of ``sf_command(SFC_UPDATE_HEADER_NOW)``; returns False (and the caller
    then relies on libsndfile's tolerance of a zero-length WAV header) if that binding is unavailable.
    """
    try:
        from soundfile import _ffi, _snd

        _snd.sf_command(sound_file._file, SFC_UPDATE_HEADER_NOW, _ffi.NULL, 0)
        return True
    except (ImportError, AttributeError):  # pragma: no cover - a soundfile without these internals
        return False


class Recorder:
    """Records one input device to ``path`` until ``stop()`` (or ``max_seconds``).

    ``device``: name, index or None (the default input). ``sample_rate``: Hz, None for the device's
    preferred rate (48000 for sound-server devices). ``channels``: 1 = mono. ``subtype``: the sample
    encoding, e.g. "PCM_16", "PCM_24", "FLOAT" (formats that do not take it use their default).
    ``recover_timeout_s``: how long to keep reopening a stream that died before giving up (0: never
    reopen; the recording then ends at the first stream failure).

    Thread-safe: ``start``/``stop`` from any thread (both idempotent); status properties are cheap.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: devices.DeviceSpec = None,
        sample_rate: int | None = None,
        channels: int = 1,
        subtype: str = "PCM_16",
        *,
        max_seconds: float | None = None,
        blocksize: int = DEFAULT_BLOCKSIZE,
        latency: str | float = DEFAULT_LATENCY,
        ring_s: float = DEFAULT_RING_S,
        history_s: float = DEFAULT_HISTORY_S,
        header_interval_s: float = DEFAULT_HEADER_INTERVAL_S,
        sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
        recover_timeout_s: float = DEFAULT_RECOVER_TIMEOUT_S,
    ) -> None:
        self.path = os.fspath(path)
        self.format = _major_format(self.path)
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.device_spec = device
        self.requested_rate = sample_rate
        self.channels = int(channels)
        self.subtype = subtype.upper()
        self.max_seconds = max_seconds
        self.blocksize = blocksize
        self.latency = latency
        self.ring_s = ring_s
        self.history_s = history_s
        self.header_interval_s = header_interval_s
        self.sync_interval_s = sync_interval_s
        self.recover_timeout_s = check_recover_timeout(recover_timeout_s)
        self.sample_rate = 0
        self.device_info: devices.DeviceInfo | None = None
        self._lock = threading.Lock()
        self._state = RecorderState.IDLE
        self._last_error: Exception | None = None
        self._stream = None
        self._file = None
        self._thread: threading.Thread | None = None
        self._quit = threading.Event()
        self._ring: FrameRing | None = None
        self._history: HistoryRing | None = None
        self._meter: LevelMeter | None = None
        self._frames_written = 0
        self._ring_overflows = 0
        self._dropped_frames = 0
        self._device_overflows = 0
        self._callbacks = 0
        self._gaps: list[RecordingGap] = []
        self._gap_frames = 0  # frames of reopen gaps (ring drops are in _dropped_frames)
        self._reopen_gaps = 0
        # (ring position, frames) of every ring-full drop: appended by the callback after the frames
        # before it are in the ring, consumed by the writer, which writes that much silence there
        self._ring_drops: collections.deque[tuple[int, int]] = collections.deque()
        self._ring_full = False  # the callback's last block did not fit (an overflow episode goes on)
        # Written by the callback, read by the writer: the last block's ADC time (s, PortAudio's clock),
        # length (frames) and arrival (time.monotonic); the first block of a reopened stream likewise.
        self._last_block: tuple[float, int, float] | None = None
        self._awaiting_first_block = False
        self._first_block: tuple[float, int, float] | None = None
        self._target_path = self.path
        self._partial_path: str | None = None
        self._max_frames: int | None = None

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> Recorder:
        """Open the device and the file and start recording (no-op while recording).

        Raises AudioDeviceError (device missing or settings unsupported), files.AudioWriteError (the
        file cannot be created), RuntimeError when this recorder has already finished.
        """
        with self._lock:
            if self._state == RecorderState.RECORDING:
                return self
            if self._state == RecorderState.STOPPED:
                raise RuntimeError(f"this Recorder already finished {self.path!r}; make a new one to record again")
            sd = devices.sd()
            info = devices.resolve_device(self.device_spec, "input")
            rate = int(self.requested_rate or info.preferred_rate)
            devices.validate_input(info, rate, self.channels)
            self.device_info = info
            self.sample_rate = rate
            self._ring = FrameRing(max(int(self.ring_s * rate), 4096), self.channels)
            self._history = HistoryRing(max(int(self.history_s * rate), 1), self.channels)
            self._meter = LevelMeter(rate)
            self._max_frames = None if self.max_seconds is None else int(round(self.max_seconds * rate))
            self._file = self._open_file(rate)
            try:
                self._stream = self._open_stream()
            except (sd.PortAudioError, ValueError) as exc:
                self._close_stream()
                self._close_file()
                with contextlib.suppress(OSError):
                    os.unlink(self._partial_path or self.path)  # the empty file we just created
                raise devices.AudioDeviceError(
                    f"cannot record from {info.name!r} at {rate} Hz, {self.channels} channel(s): {exc}; "
                    f"try its rate {info.preferred_rate} Hz or another device (`studio devices` lists them)"
                ) from exc
            self._started_at = time.monotonic()
            self._state = RecorderState.RECORDING
            self._thread = threading.Thread(target=self._write_loop, name="recorder-write", daemon=True)
            self._thread.start()
        log.info("recording %r from %r at %d Hz, %d ch", self.path, info.name, rate, self.channels)
        return self

    def _open_stream(self):
        """Open and start an input stream on the resolved device (start and recovery)."""
        return open_started(
            devices.sd().InputStream,
            **stream_settings(
                self.device_info.index, self.sample_rate, self.channels, self.blocksize, self.latency, self._callback
            ),
        )

    def stop(self) -> str:
        """Stop, write what is buffered, finalise the file and return its path (idempotent)."""
        with self._lock:
            thread = self._thread
            self._quit.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._lock:
            self._thread = None
            if self._state == RecorderState.IDLE:
                self._state = RecorderState.STOPPED
        return self._target_path

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until recording has stopped (e.g. at ``max_seconds``); True if it did in time."""
        return wait_while(lambda: self._state == RecorderState.RECORDING, timeout)

    # ---------------------------------------------------------------------------------- status
    @property
    def state(self) -> RecorderState:
        """IDLE, RECORDING or STOPPED (any thread; changes on the writer thread when recording ends)."""
        return self._state

    @property
    def last_error(self) -> Exception | None:
        """What ended the recording early (device gone, disk full), or None."""
        return self._last_error

    @property
    def frames_recorded(self) -> int:
        """Frames written to the file so far."""
        return self._frames_written

    @property
    def elapsed_s(self) -> float:
        """Seconds of audio captured so far (written or waiting in the ring)."""
        ring = self._ring
        if ring is None or not self.sample_rate:
            return 0.0
        captured = ring.write_pos + self._dropped_frames + self._gap_frames
        if self._max_frames is not None:
            captured = min(captured, self._max_frames)
        return captured / self.sample_rate

    @property
    def overflows(self) -> int:
        """Times audio was lost: the ring was full, PortAudio's input_overflow flags, and gaps (the
        stream died and was reopened)."""
        return self._ring_overflows + self._device_overflows + self._reopen_gaps

    @property
    def dropped_frames(self) -> int:
        """Frames lost: the ring was full (the writer fell behind) or the stream was reopened; every one
        of them is in the file as silence."""
        return self._dropped_frames + self._gap_frames

    @property
    def gaps(self) -> tuple[RecordingGap, ...]:
        """Spans lost (the stream was reopened, or the ring was full), held as silence in the file."""
        return tuple(self._gaps)

    @property
    def level(self) -> Levels:
        """Peak/RMS dBFS of the last ~50 ms written, peak hold and the clip indicator."""
        meter = self._meter
        return meter.levels() if meter is not None else Levels()

    @property
    def latency_s(self) -> float:
        """The input stream's latency in seconds (0.0 while no stream is open)."""
        return stream_latency_s(self._stream)

    def reset_clip(self) -> None:
        """Clear the level meter's clip indicator (any thread)."""
        if self._meter is not None:
            self._meter.reset_clip()

    def recent(self, n_frames: int) -> np.ndarray:
        """A copy of the last ``n_frames`` frames recorded, ``(frames, channels)`` float32 (fewer at
        the start, at most ``history_s`` seconds' worth)."""
        history = self._history
        if history is None:
            return np.zeros((0, self.channels), dtype=np.float32)
        return history.latest(int(n_frames))

    # ---------------------------------------------------------------------------------- callback
    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's thread: copy into the ring and count. No allocation of sample memory, no logs.

        Also notes each block's timing (one tuple) so the writer can measure a gap after a reopen; the
        first block of a reopened stream is noted BEFORE its frames enter the ring, so the writer never
        sees new audio without knowing where the gap ends.
        """
        if status.input_overflow:
            self._device_overflows += 1
        block = (float(time_info.inputBufferAdcTime), frames, time.monotonic())
        if self._awaiting_first_block:
            self._first_block = block
            self._awaiting_first_block = False
        ring = self._ring
        n = ring.write(indata)
        if n < frames:
            if not self._ring_full:  # one overflow per episode, however many blocks it drops
                self._ring_overflows += 1
                self._ring_full = True
            self._dropped_frames += frames - n
            self._ring_drops.append((ring.write_pos, frames - n))  # after the write: the writer sees it in time
        else:
            self._ring_full = False
        self._last_block = block
        self._callbacks += 1

    # ---------------------------------------------------------------------------------- writer
    def _open_file(self, rate: int):
        import soundfile

        from studio.engine.audio.files import AudioWriteError

        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise AudioWriteError(f"cannot record to {self.path!r}: folder {folder!r} does not exist", self.path)
        if self.format in HEADER_UPDATABLE_FORMATS:
            path, major = self.path, self.format
        else:  # not readable after a crash: record WAV next to it, convert at the end
            self._partial_path = path = self.path + ".partial.wav"
            major = "WAV"
        subtype = self.subtype if soundfile.check_format(major, self.subtype) else soundfile.default_subtype(major)
        try:
            return soundfile.SoundFile(path, "w", rate, self.channels, subtype, format=major)
        except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
            raise AudioWriteError(f"cannot create {path!r} for recording: {exc}", path) from exc

    def _write_loop(self) -> None:
        last_header = last_sync = time.monotonic()
        last_callbacks, last_progress = -1, time.monotonic()
        try:
            while True:
                quitting = self._quit.is_set()
                if quitting:
                    self._close_stream()  # no more input; then drain what is left
                wrote = self._drain()
                now = time.monotonic()
                if wrote and now - last_header >= self.header_interval_s:
                    update_header(self._file)
                    last_header = now
                if now - last_sync >= self.sync_interval_s:
                    self._file.flush()  # fsync: survive a power cut, not only a crash
                    last_sync = now
                if quitting or self._reached_max():
                    break
                if self._callbacks != last_callbacks:
                    last_callbacks, last_progress = self._callbacks, now
                stream = self._stream
                dead = stream is None or not stream.active
                if dead or now - last_progress > STALL_TIMEOUT_S:
                    reason = "stopped" if dead else f"delivered nothing for {STALL_TIMEOUT_S:g} s"
                    if not self._recover(reason):
                        break
                    last_callbacks, last_progress = self._callbacks, time.monotonic()
                    continue
                self._quit.wait(WRITER_PERIOD_S)
        except Exception as exc:  # disk full, file removed …: keep what was written
            self._last_error = exc
            log.exception("recording to %r failed", self.path)
        finally:
            self._close_stream()
            self._close_file()
            self._finish_partial()
            self._state = RecorderState.STOPPED
            log.info(
                "recorded %.2f s to %r (%d overflows, %d gaps)",
                self._frames_written / max(self.sample_rate, 1),
                self._target_path,
                self.overflows,
                len(self._gaps),
            )

    def _reached_max(self) -> bool:
        return self._max_frames is not None and self._frames_written >= self._max_frames

    # ---------------------------------------------------------------------------------- recovery
    def _recover(self, reason: str) -> bool:
        """Writer thread: replace a dead input stream (see the module doc).

        Returns True when a new stream delivers audio again (the gap is then in the file as silence),
        False when the writer should end: ``stop()`` was called (no error) or reopening failed for
        ``recover_timeout_s`` (``last_error`` says so).
        """
        name = self.device_info.name if self.device_info else "?"
        lost_at = time.monotonic()
        at_s = self._frames_written / self.sample_rate
        log.warning("the input stream from %r %s at %.2f s; reopening it", name, reason, at_s)
        self._close_stream(abort=True)
        self._drain()  # what the old stream captured before it died
        last_block = self._last_block
        deadline = lost_at + self.recover_timeout_s
        problem = reason
        for attempt in reopen_attempts(self._quit, deadline):
            self._first_block = None
            self._awaiting_first_block = True
            try:
                self._stream = self._open_stream()
            except (devices.sd().PortAudioError, ValueError) as exc:
                self._awaiting_first_block = False
                problem = f"reopening failed: {exc}"
                log.info("reopening %r (attempt %d) failed: %s", name, attempt, exc)
            else:
                opened = time.monotonic()
                while self._awaiting_first_block and time.monotonic() - opened < STALL_TIMEOUT_S:
                    if self._quit.wait(WRITER_PERIOD_S / 2):
                        break
                if not self._awaiting_first_block:
                    self._fill_gap(last_block, self._first_block, lost_at, reason)
                    return True
                self._awaiting_first_block = False
                self._close_stream(abort=True)
                if self._quit.is_set():
                    break
                problem = f"the reopened stream delivered nothing for {STALL_TIMEOUT_S:g} s"
        if self._quit.is_set():
            return False  # stopped while recovering: not an error
        self._last_error = devices.AudioDeviceError(
            f"the input device {name!r} stopped delivering audio and could not be reopened within "
            f"{self.recover_timeout_s:g} s ({problem}; unplugged, taken by another program, or the "
            f"sound server stopped?); recording ended at {at_s:.2f} s, saved in {self._target_path!r}"
        )
        log.warning("%s", self._last_error)
        return False

    def _fill_gap(self, before, after, lost_at: float, reason: str) -> None:
        """Write the span between the old stream's last block and the new one's first as silence.

        ``before``/``after``: ``(adc_time_s, frames, monotonic_s)`` of those blocks (``before`` None
        when the first stream never delivered). Called before any new audio is drained.
        """
        rate = self.sample_rate
        adc_after, frames_after, mono_after = after
        new_start_mono = mono_after - frames_after / rate  # arrival of the new block, less its length
        if before is None:
            gap_s = max(new_start_mono - self._started_at, 0.0)
        else:
            adc_before, frames_before, mono_before = before
            wall_gap = new_start_mono - mono_before
            gap_s = wall_gap
            if adc_before > 0 and adc_after > 0:  # the host API gives capture timestamps
                adc_gap = adc_after - (adc_before + frames_before / rate)
                if -0.05 <= adc_gap <= wall_gap + 1.0:  # same clock, no jump: trust it
                    gap_s = adc_gap
        frames = max(int(round(gap_s * rate)), 0)
        gap, written = self._silence_gap(frames, reason)
        self._gap_frames += written
        self._reopen_gaps += 1
        log.warning(
            "the input stream was reopened after %.2f s; %.3f s of lost audio written as silence at %.2f s",
            time.monotonic() - lost_at,
            gap.duration_s,
            gap.start_s,
        )

    def _silence_gap(self, frames: int, reason: str) -> tuple[RecordingGap, int]:
        """Write ``frames`` of silence here (up to ``max_seconds``) and list it as a gap; returns the
        gap and the frames written."""
        if self._max_frames is not None:
            frames = min(frames, max(self._max_frames - self._frames_written, 0))
        gap = RecordingGap(self._frames_written / self.sample_rate, frames / self.sample_rate, reason)
        self._write_silence(frames)
        self._gaps.append(gap)
        return gap, frames

    def _write_silence(self, frames: int) -> None:
        block = np.zeros((min(frames, 65536), self.channels), dtype=np.float32)
        left = frames
        while left > 0:
            part = block[: min(left, block.shape[0])]
            self._file.write(part)
            self._history.append(part)
            self._meter.update(part)
            left -= part.shape[0]
        self._frames_written += frames

    def _drain(self) -> int:
        """Write what the ring holds, with silence where the callback had to drop frames; returns the
        frames written (audio and silence)."""
        ring = self._ring
        drops = self._ring_drops
        wrote = 0
        while True:
            if self._reached_max():
                return wrote
            end = ring.read_pos + ring.readable()  # first: every drop below ``end`` is already noted
            if drops and drops[0][0] <= ring.read_pos:
                at, lost = drops.popleft()
                while drops and drops[0][0] == at:  # every block dropped while the ring stayed full
                    lost += drops.popleft()[1]
                gap, written = self._silence_gap(lost, RING_FULL)
                wrote += written
                log.warning("the writer fell behind: %.3f s lost at %.2f s, written as silence", lost / self.sample_rate, gap.start_s)
                continue
            if drops and drops[0][0] < end:
                end = drops[0][0]
            n = end - ring.read_pos
            if self._max_frames is not None:
                n = min(n, self._max_frames - self._frames_written)
            if n <= 0:
                return wrote
            view = ring.peek(n)
            n = view.shape[0]
            self._file.write(view)
            self._history.append(view)
            self._meter.update(view)
            ring.advance(n)
            self._frames_written += n
            wrote += n

    def _close_stream(self, abort: bool = False) -> None:
        """Close the input stream; ``abort`` for a dead or stalled one (nothing left to wait for)."""
        stream, self._stream = self._stream, None
        close_quietly(stream, abort=abort, what="input stream")

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None and not f.closed:
            try:
                f.close()
            except Exception as exc:
                log.warning("closing %r failed: %s", self.path, exc)
                if self._last_error is None:
                    self._last_error = exc

    def _finish_partial(self) -> None:
        """Convert the crash-safe ``.partial.wav`` into the requested format, then remove it."""
        partial = self._partial_path
        if partial is None or not os.path.exists(partial):
            return
        import soundfile

        try:
            with soundfile.SoundFile(partial) as src:
                if self.path.lower().endswith(".opus"):
                    subtype = "OPUS"
                elif soundfile.check_format(self.format, self.subtype):
                    subtype = self.subtype
                else:
                    subtype = soundfile.default_subtype(self.format)
                with soundfile.SoundFile(
                    self.path, "w", src.samplerate, src.channels, subtype, format=self.format
                ) as dst:
                    for block in src.blocks(65536, dtype="float32", always_2d=True):
                        dst.write(block)
            os.unlink(partial)
        except Exception as exc:
            log.warning("could not convert %r to %s; the recording is kept there: %s", partial, self.format, exc)
            if self._last_error is None:
                self._last_error = exc
            self._target_path = partial
            with contextlib.suppress(OSError):
                os.unlink(self.path)
