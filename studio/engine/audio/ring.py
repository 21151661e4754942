"""Preallocated ring buffers of float32 frames for the real-time audio paths.

``FrameRing`` is a single-producer/single-consumer FIFO: one thread writes, one thread reads, and the
audio callback may be either side without taking a lock. ``HistoryRing`` keeps the last N frames of a
signal (overwriting), for meters and live waveforms.

Layout: the storage is *mirrored*, ``2 * capacity`` frames where frame ``i`` and frame ``i + capacity``
always hold the same sample. Writers copy each block into both halves (at most four slice copies), so a
reader can take any ``n <= capacity`` readable frames as ONE contiguous view, ``_buf[start:start + n]``,
no matter where the wrap falls. The callback then does a single ``outdata[:n] = view`` copy.

Positions are absolute frame counters (Python ints, they never wrap): ``write_pos`` counts every frame
ever written, ``read_pos`` every frame ever consumed. Readable frames are ``write_pos - read_pos``;
free space is ``capacity - readable``. A position maps to storage index ``pos % capacity``.

Memory ordering (CPython with the GIL, i.e. this project's Python 3.11):

* Each counter has exactly one writer: the producer alone assigns ``_write_pos``, the consumer alone
  assigns ``_read_pos`` (and ``_skip_to`` below is only *requested* by the producer, *applied* by the
  consumer). Rebinding an attribute to a new int is a single atomic store under the GIL; a reader sees
  either the old or the new value, never a torn one.
* The producer copies the samples first and publishes ``_write_pos`` after the copy has returned.
  NumPy may release the GIL inside a large copy, but the store of the new position happens only
  after the copy call has finished, and every GIL hand-off between threads is a full memory barrier.
  So a consumer that reads ``_write_pos == p`` also sees every sample below ``p``.
* Symmetrically, the consumer finishes copying out before it publishes ``_read_pos``, so the producer
  never overwrites frames the consumer is still reading.
* Each side snapshots the other side's counter once per call; the worst case of a stale snapshot is
  seeing a little less data (or space) than there really is, which is always safe.

On a free-threaded build (no GIL) these stores would need real atomics/fences; this module documents
the GIL assumption rather than pretending otherwise.
"""

from __future__ import annotations

import numpy as np


def _as_frames(block: np.ndarray, channels: int) -> np.ndarray:
    """View a ``(frames,)`` or ``(frames, channels)`` block as ``(frames, channels)``."""
    if block.ndim == 1 and channels == 1:
        return block.reshape(-1, 1)
    if block.ndim != 2 or block.shape[1] != channels:
        raise ValueError(f"expected a block of shape (frames, {channels}), got {block.shape}")
    return block


def _store_mirrored(buf: np.ndarray, capacity: int, pos: int, block: np.ndarray) -> None:
    """Copy ``block`` (``n <= capacity`` frames) to absolute position ``pos`` of mirrored storage
    ``buf`` (``2 * capacity`` frames): into both halves, split where the ring wraps. No allocation."""
    n = block.shape[0]
    start = pos % capacity
    first = min(n, capacity - start)
    buf[start : start + first] = block[:first]
    buf[start + capacity : start + capacity + first] = block[:first]
    if first < n:
        rest = n - first
        buf[:rest] = block[first:n]
        buf[capacity : capacity + rest] = block[first:n]


class _MirroredRing:
    """What both rings hold: mirrored float32 storage of ``capacity`` frames × ``channels`` (see the
    module doc) and the absolute count of frames ever written into it."""

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be >= 1, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((2 * self.capacity, self.channels), dtype=np.float32)
        self._write_pos = 0

    @property
    def write_pos(self) -> int:
        """Absolute count of frames ever written (appended)."""
        return self._write_pos


class FrameRing(_MirroredRing):
    """Lock-free SPSC FIFO of float32 frames, ``capacity`` frames × ``channels``.

    Producer side: ``write``, ``writable``, ``request_flush``. Consumer side (may be the audio
    callback: no allocation, no locks): ``read_into``, ``peek``, ``advance``, ``readable``.
    """

    def __init__(self, capacity: int, channels: int) -> None:
        super().__init__(capacity, channels)
        self._read_pos = 0
        self._skip_to = 0  # a flush request from the producer; the consumer jumps read_pos up to it

    # ---- shared, read-only (and ``write_pos``) -----------------------------------------------
    @property
    def read_pos(self) -> int:
        """Absolute count of frames ever consumed (or skipped by a flush)."""
        return self._read_pos

    def readable(self) -> int:
        """Frames the consumer will get from now on (a pending flush's frames excluded)."""
        return self._write_pos - max(self._read_pos, self._skip_to)

    def writable(self) -> int:
        """Frames the producer could write now without overwriting unread data."""
        return self.capacity - (self._write_pos - self._read_pos)

    # ---- producer ----------------------------------------------------------------------------
    def write(self, block: np.ndarray) -> int:
        """Copy as many leading frames of ``block`` as fit; return how many were written.

        ``block``: ``(frames, channels)`` (or ``(frames,)`` for one channel), any float dtype.
        """
        block = _as_frames(block, self.channels)
        n = min(block.shape[0], self.capacity - (self._write_pos - self._read_pos))
        if n <= 0:
            return 0
        _store_mirrored(self._buf, self.capacity, self._write_pos, block[:n])
        self._write_pos += n  # publish after the copy (see the module docstring)
        return n

    def request_flush(self) -> int:
        """Ask the consumer to drop everything written so far; returns the position it will skip to.

        The consumer applies it on its next ``read_into``/``peek``/``apply_flush``. Until then the
        dropped frames still count as readable, so ``writable()`` stays conservative.
        """
        self._skip_to = self._write_pos
        return self._skip_to

    # ---- consumer ----------------------------------------------------------------------------
    def apply_flush(self) -> bool:
        """Honour a pending flush request (consumer side); True when frames were dropped."""
        skip_to = self._skip_to
        if skip_to > self._read_pos:
            self._read_pos = skip_to
            return True
        return False

    def peek(self, n: int) -> np.ndarray:
        """A contiguous read-only view of up to ``n`` readable frames (no copy); see ``advance``."""
        self.apply_flush()
        n = min(n, self._write_pos - self._read_pos)
        start = self._read_pos % self.capacity
        view = self._buf[start : start + max(n, 0)]
        view.flags.writeable = False
        return view

    def advance(self, n: int) -> None:
        """Mark ``n`` frames (at most what ``peek`` returned) as consumed."""
        if n < 0 or n > self._write_pos - self._read_pos:
            raise ValueError(f"cannot advance by {n}; {self.readable()} frames readable")
        self._read_pos += n

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames into ``out`` (shape ``(frames, channels)``); return the count.

        Frames of ``out`` past the returned count are left untouched. This is the callback's path:
        one slice copy, two int stores, no allocation of sample memory.
        """
        skip_to = self._skip_to
        if skip_to > self._read_pos:
            self._read_pos = skip_to
        n = min(out.shape[0], self._write_pos - self._read_pos)
        if n <= 0:
            return 0
        start = self._read_pos % self.capacity
        out[:n] = self._buf[start : start + n]
        self._read_pos += n  # publish after the copy
        return n

    def reset(self) -> None:
        """Empty the ring. Only while neither side is running (e.g. before a stream starts)."""
        self._write_pos = 0
        self._read_pos = 0
        self._skip_to = 0


class HistoryRing(_MirroredRing):
    """The most recent ``capacity`` frames of a signal, overwritten as new frames arrive.

    One writer (``append``) and any number of readers (``latest``/``since``). Readers copy, so a
    reading can straddle a concurrent write by at most the frames written meanwhile; that is fine for
    its uses (level meters, live waveforms), which is why it takes no lock.
    """

    def append(self, block: np.ndarray) -> None:
        """Append ``(frames, channels)`` frames; only the last ``capacity`` are kept. No allocation."""
        block = _as_frames(block, self.channels)
        n = block.shape[0]
        if n == 0:
            return
        if n > self.capacity:
            self._write_pos += n - self.capacity
            block = block[n - self.capacity :]
            n = self.capacity
        _store_mirrored(self._buf, self.capacity, self._write_pos, block)
        self._write_pos += n

    def latest(self, n: int) -> np.ndarray:
        """A copy of the last ``min(n, frames appended, capacity)`` frames, ``(frames, channels)``."""
        end = self._write_pos
        return self.since(end - n, end)

    def since(self, start: int, end: int | None = None) -> np.ndarray:
        """A copy of frames with absolute positions ``[start, end)``, clipped to what is still kept."""
        end = self._write_pos if end is None else min(end, self._write_pos)
        start = max(start, end - self.capacity, 0)
        if end <= start:
            return np.zeros((0, self.channels), dtype=np.float32)
        s = start % self.capacity
        return self._buf[s : s + (end - start)].copy()
