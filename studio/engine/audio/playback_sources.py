"""What the player plays: an in-memory buffer, a file streamed in blocks, or a live stream of blocks.

Every source hands out float32 blocks shaped ``(frames, channels)`` at its own sample rate. Sources are
used by ONE thread, the player's producer thread (the live feeder's ``push``/``finish`` excepted, which
are meant for the thread that generates audio). Nothing here runs in the audio callback.
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

from studio.engine.audio import files


def fit_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """``(frames, c)`` → ``(frames, channels)``: equal counts pass, mono is duplicated, else averaged."""
    have = block.shape[1]
    if have == channels:
        return block
    mono = block if have == 1 else block.mean(axis=1, keepdims=True, dtype=np.float32)
    return mono if channels == 1 else np.repeat(mono, channels, axis=1)


def as_frames(block: np.ndarray, channels: int | None = None) -> np.ndarray:
    """A float32 copy shaped ``(frames, channels)`` of a ``(frames,)`` or ``(frames, c)`` array."""
    x = np.asarray(block, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise ValueError(f"audio blocks must be [frames] or [frames, channels], got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"expected {channels} channel(s), got a block of shape {x.shape}")
    return np.ascontiguousarray(x)


class Source:
    """Base of the player's sources (producer thread only)."""

    sample_rate: int
    channels: int
    frames: int | None  # total length in frames, None while unknown (live)
    seekable: bool = True
    live: bool = False

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` frames from the cursor, ``(k, channels)`` float32; k == 0 at the end (or, for a
        live source, when nothing is queued yet — see ``exhausted``)."""
        raise NotImplementedError

    def seek(self, frame: int) -> None:
        raise NotImplementedError

    def tell(self) -> int:
        raise NotImplementedError

    @property
    def exhausted(self) -> bool:
        """True when no more frames will ever come from the cursor on."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files; idempotent."""


class BufferSource(Source):
    """An array in memory, ``[T]`` or ``[T, C]`` at ``sample_rate`` Hz (not copied unless needed)."""

    def __init__(self, audio: np.ndarray, sample_rate: int) -> None:
        self._audio = as_frames(audio)
        if self._audio.shape[0] == 0:
            raise ValueError("cannot play an empty buffer")
        if not np.all(np.isfinite(self._audio)):
            raise ValueError("cannot play a buffer that contains NaN or inf samples")
        self.sample_rate = int(sample_rate)
        self.channels = self._audio.shape[1]
        self.frames = self._audio.shape[0]
        self._cursor = 0

    def read(self, n: int) -> np.ndarray:
        block = self._audio[self._cursor : self._cursor + max(n, 0)]
        self._cursor += block.shape[0]
        return block

    def seek(self, frame: int) -> None:
        self._cursor = min(max(int(frame), 0), self.frames)

    def tell(self) -> int:
        return self._cursor

    @property
    def exhausted(self) -> bool:
        return self._cursor >= self.frames


class FileSource(Source):
    """A sound file read block by block through libsndfile (an hour-long file is never loaded whole).

    Opening checks the file with ``files.info`` (header only), so a bad path or a non-audio file raises
    the typed ``files.AudioFileError`` before playback starts. A decoding error later (a file damaged
    half way) raises AudioFileError from ``read``; the player reports it and plays what it got.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import soundfile

        self.path = os.fspath(path)
        header = files.info(self.path, stats=False)
        try:
            self._file = soundfile.SoundFile(self.path)
        except (soundfile.SoundFileError, RuntimeError) as exc:
            raise files.AudioFileError(f"cannot open {self.path!r} for playback: {exc}", self.path) from exc
        self.sample_rate = int(header.sample_rate)
        self.channels = int(header.channels)
        self.frames = int(header.frames)
        self.seekable = bool(self._file.seekable())
        self._cursor = 0
        self._ended = False

    def read(self, n: int) -> np.ndarray:
        if n <= 0 or self._ended:
            return np.zeros((0, self.channels), dtype=np.float32)
        try:
            block = self._file.read(n, dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile raises RuntimeError/SoundFileError for damaged data
            self._ended = True
            raise files.AudioFileError(
                f"{self.path!r} could not be decoded after {self._cursor / self.sample_rate:.2f} s: {exc}",
                self.path,
            ) from exc
        if block.shape[0] == 0:
            self._ended = True
        np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        self._cursor += block.shape[0]
        return block

    def seek(self, frame: int) -> None:
        frame = min(max(int(frame), 0), self.frames)
        self._file.seek(frame)
        self._cursor = frame
        self._ended = False

    def tell(self) -> int:
        return self._cursor

    @property
    def exhausted(self) -> bool:
        return self._ended or self._cursor >= self.frames

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class LiveFeeder:
    """Hand-off point for audio that is still being produced (a model generating, a network stream).

    The producing thread calls ``push(block)`` for each block (float ``[n]`` or ``[n, channels]`` at the
    feeder's ``sample_rate``) and ``finish()`` after the last one. ``push`` never blocks: blocks queue
    here until the player's producer thread moves them into the ring, so a generator that runs faster
    than real time is never slowed by playback. ``closed`` turns True when the player stops, so the
    generator can stop early; pushes after that are dropped.
    """

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._blocks: collections.deque[np.ndarray] = collections.deque()
        self._finished = threading.Event()
        self._closed = False
        self.frames_pushed = 0

    def push(self, block: np.ndarray) -> None:
        """Queue one block (copied). Thread-safe for one producing thread."""
        if self._closed:
            return
        if self._finished.is_set():
            raise RuntimeError("push() after finish(): this stream has ended")
        x = as_frames(block, self.channels)
        if x.shape[0]:
            self._blocks.append(x)
            self.frames_pushed += x.shape[0]

    def finish(self) -> None:
        """Say that no more blocks will come; playback ends when the queued audio has played."""
        self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def closed(self) -> bool:
        """True once the player stopped: further pushes are dropped."""
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._finished.set()
        self._blocks.clear()


class LiveSource(Source):
    """The producer-thread side of a ``LiveFeeder``: not seekable, length unknown until finished."""

    seekable = False
    live = True

    def __init__(self, feeder: LiveFeeder) -> None:
        self.feeder = feeder
        self.sample_rate = feeder.sample_rate
        self.channels = feeder.channels
        self.frames = None
        self._head: np.ndarray | None = None  # the partly consumed first block
        self._cursor = 0

    def read(self, n: int) -> np.ndarray:
        parts = []
        got = 0
        while got < n:
            if self._head is None:
                if not self.feeder._blocks:
                    break
                self._head = self.feeder._blocks.popleft()
            take = self._head[: n - got]
            parts.append(take)
            got += take.shape[0]
            self._head = self._head[take.shape[0] :] if take.shape[0] < self._head.shape[0] else None
        self._cursor += got
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def seek(self, frame: int) -> None:
        raise ValueError("a live stream cannot seek")

    def tell(self) -> int:
        return self._cursor

    @property
    def exhausted(self) -> bool:
        # Read the finished flag BEFORE checking the queue: a push that lands between would be missed
        # otherwise (the producing thread appends first, then sets finished).
        finished = self.feeder.finished
        return finished and self._head is None and not self.feeder._blocks

    def close(self) -> None:
        self.feeder.close()
