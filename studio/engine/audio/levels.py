"""Level metering in dBFS: peak, RMS, peak hold and a sticky clip indicator.

Pure logic (numpy only), shared by the player (what was played) and the recorder (what came in).
Full scale is 1.0 for float audio, so a full-scale sine has a peak of 0 dBFS and an RMS of about
-3 dBFS. Silence is reported as ``SILENCE_DB`` rather than ``-inf`` so readouts and plots stay finite.

Threads: a ``LevelMeter`` is updated by one thread (the producer or writer thread, never the audio
callback) and read from any thread; both sides take its small lock, which is held only for a few
arithmetic operations.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SILENCE_DB = -120.0
DEFAULT_CLIP_THRESHOLD = 0.999  # |x| at or above this counts as a clipped sample (16-bit full scale is 0.99997)
DEFAULT_HOLD_S = 1.5  # how long the peak-hold marker stays before it starts to fall
DEFAULT_DECAY_DB_PER_S = 20.0  # how fast the held peak falls after the hold time
DEFAULT_WINDOW_S = 0.05  # the meter's integration window: the last 50 ms make the readout


def to_db(amplitude: float) -> float:
    """Linear amplitude (1.0 = full scale) to dBFS, floored at ``SILENCE_DB``."""
    if amplitude <= 0.0 or not math.isfinite(amplitude):
        return SILENCE_DB if amplitude <= 0.0 else 0.0
    return max(SILENCE_DB, 20.0 * math.log10(amplitude))


def peak_of(block: np.ndarray) -> float:
    """Largest absolute sample of a block of any shape (0.0 for an empty block)."""
    if block.size == 0:
        return 0.0
    return float(max(abs(float(block.max())), abs(float(block.min()))))


def rms_of(block: np.ndarray) -> float:
    """Root mean square over all samples of a block of any shape (0.0 for an empty block)."""
    if block.size == 0:
        return 0.0
    flat = block.reshape(-1).astype(np.float64, copy=False)
    return float(math.sqrt(float(np.dot(flat, flat)) / flat.size))


@dataclass(frozen=True)
class Levels:
    """One meter reading. dB values are dBFS; ``clipped`` stays True until the meter is reset."""

    peak_db: float = SILENCE_DB
    rms_db: float = SILENCE_DB
    peak_hold_db: float = SILENCE_DB
    clipped: bool = False
    clip_count: int = 0

    def as_text(self) -> str:
        """Compact one-line form for a CLI readout, e.g. ``peak -6.0 dB  rms -9.0 dB  hold -3.1 dB``."""
        clip = f"  CLIP×{self.clip_count}" if self.clipped else ""
        return f"peak {self.peak_db:6.1f} dB  rms {self.rms_db:6.1f} dB  hold {self.peak_hold_db:6.1f} dB{clip}"


class LevelMeter:
    """Peak/RMS over a sliding window of recent audio, with peak hold and clip detection.

    Feed every block in order with ``update(block)`` (shape ``(frames,)`` or ``(frames, channels)``,
    float, full scale 1.0). ``levels()`` gives the reading: peak and RMS of roughly the last
    ``window_s`` seconds, the held peak (kept ``hold_s`` seconds, then falling at ``decay_db_per_s``),
    and whether any sample reached ``clip_threshold`` since the last ``reset_clip()``.
    ``clock`` is injectable for tests (seconds, monotonic).
    """

    def __init__(
        self,
        sample_rate: float,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        hold_s: float = DEFAULT_HOLD_S,
        decay_db_per_s: float = DEFAULT_DECAY_DB_PER_S,
        clip_threshold: float = DEFAULT_CLIP_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = float(sample_rate)
        self.window_frames = max(1, int(round(window_s * sample_rate)))
        self.hold_s = hold_s
        self.decay_db_per_s = decay_db_per_s
        self.clip_threshold = clip_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything: silence, no held peak, clip indicator off."""
        with self._lock:
            self._chunks: list[tuple[int, float, float]] = []  # (frames, peak, sum of squares per frame)
            self._hold_amp = 0.0
            self._hold_time = self._clock()
            self._clip_count = 0

    def reset_clip(self) -> None:
        """Turn the clip indicator off (e.g. when the user clicks it)."""
        with self._lock:
            self._clip_count = 0

    def update(self, block: np.ndarray) -> None:
        """Account for the next block of audio (any number of frames, including zero).

        A block longer than a quarter window is kept as pieces of its last ``window_frames`` frames, so
        the reading covers the last ``window_s`` to within a quarter window even when blocks are long
        (a writer thread that drained 0.3 s at once after a stall must not report that 0.3 s average).
        Peak hold and clip counting see the whole block.
        """
        if block.size == 0:
            return
        peak = peak_of(block)
        clips = int(np.count_nonzero(np.abs(block) >= self.clip_threshold)) if peak >= self.clip_threshold else 0
        step = max(1, self.window_frames // 4)
        tail = block[-self.window_frames :] if block.shape[0] > self.window_frames else block
        pieces = []
        for start in range(0, tail.shape[0], step):
            piece = tail[start : start + step]
            flat = piece.reshape(-1).astype(np.float64, copy=False)
            pieces.append((piece.shape[0], peak_of(piece), float(np.dot(flat, flat)) / flat.size))
        now = self._clock()
        with self._lock:
            self._chunks.extend(pieces)
            total = sum(c[0] for c in self._chunks)
            while len(self._chunks) > 1 and total - self._chunks[0][0] >= self.window_frames:
                total -= self._chunks.pop(0)[0]
            if peak >= self._held_amplitude(now):
                self._hold_amp = peak
                self._hold_time = now
            self._clip_count += clips

    def _held_amplitude(self, now: float) -> float:
        age = now - self._hold_time
        if age <= self.hold_s or self._hold_amp <= 0.0:
            return self._hold_amp
        fallen_db = (age - self.hold_s) * self.decay_db_per_s
        return self._hold_amp * 10.0 ** (-fallen_db / 20.0)

    def levels(self) -> Levels:
        """The current reading (cheap; safe from any thread)."""
        now = self._clock()
        with self._lock:
            chunks = list(self._chunks)
            held = self._held_amplitude(now)
            clip_count = self._clip_count
        if not chunks:
            peak = rms = 0.0
        else:
            peak = max(c[1] for c in chunks)
            frames = sum(c[0] for c in chunks)
            rms = math.sqrt(sum(c[0] * c[2] for c in chunks) / frames)
        return Levels(
            peak_db=to_db(peak),
            rms_db=to_db(rms),
            peak_hold_db=to_db(max(held, peak)),
            clipped=clip_count > 0,
            clip_count=clip_count,
        )
