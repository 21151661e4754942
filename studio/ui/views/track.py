"""The audio a view shows: a growable mono float32 buffer with a min/max pyramid.

``AudioTrack`` is a view-model: once shown it is touched only on the GUI thread. Blocks are appended
as they arrive (``append`` just copies into spare capacity); the pyramid catches up lazily in
``refresh_peaks``, which the views call from their repaint timer, so the cost is O(new samples) per
tick, never per block. A whole file's pyramid is built before it is shown, off the GUI thread
(``load_track``; about 0.7 s for ten minutes at 48 kHz here).

Pyramid: level 0 holds the min and max of every ``BASE_BLOCK`` samples; each further level merges
``FACTOR`` entries of the level below. Drawing an hour of audio at 1000 px then touches a few thousand
entries of the right level instead of 170 million samples.
"""

from __future__ import annotations

import os

import numpy as np

BASE_BLOCK = 16  # samples per level-0 entry
FACTOR = 4  # entries of level k merged into one entry of level k+1
MIN_ENTRIES = 256  # stop adding levels once a level has fewer entries than this


class GrowableArray:
    """A 1-D float32 array with amortised O(1) append; ``data`` is a view of the filled part."""

    def __init__(self, capacity: int = 4096) -> None:
        self._buf = np.zeros(max(16, capacity), np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def data(self) -> np.ndarray:
        return self._buf[: self._n]

    def append(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float32).reshape(-1)
        need = self._n + values.shape[0]
        if need > self._buf.shape[0]:
            new = np.zeros(max(need, self._buf.shape[0] * 2), np.float32)
            new[: self._n] = self._buf[: self._n]
            self._buf = new
        self._buf[self._n : need] = values
        self._n = need

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values (for rewriting a partial tail entry)."""
        self._n = max(0, min(n, self._n))


class PeakLevel:
    """One pyramid level: entry i covers samples [i*block, (i+1)*block) — the last one may be partial."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.mins = GrowableArray()
        self.maxs = GrowableArray()

    def __len__(self) -> int:
        return len(self.mins)


class AudioTrack:
    """Mono audio at ``sample_rate`` Hz that can grow, plus its min/max pyramid.

    ``version`` increases on every change so that views can tell whether to repaint. ``complete`` is
    False while the track still grows (a recording or a generation) — views then skip the last
    partial spectrogram frame — and True once it is whole (the default when ``audio`` is given).
    """

    def __init__(
        self, sample_rate: int, audio: np.ndarray | None = None, name: str = "", complete: bool | None = None
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.name = name
        self._samples = GrowableArray(0 if audio is None else len(audio))
        self._levels: list[PeakLevel] = [PeakLevel(BASE_BLOCK)]
        self._peaks_upto = 0  # samples already folded into complete level-0 entries
        self._peaks_n = 0  # samples seen by the last refresh_peaks
        self.version = 0
        self.complete = audio is not None if complete is None else complete
        if audio is not None:
            self.append(audio)

    # -- data ------------------------------------------------------------------------------
    @property
    def samples(self) -> np.ndarray:
        """float32 [n] view of all samples so far (do not keep it across appends)."""
        return self._samples.data

    @property
    def num_samples(self) -> int:
        return len(self._samples)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def append(self, block: np.ndarray) -> None:
        """Append samples (any shape; multichannel [frames, ch] is averaged to mono)."""
        block = np.asarray(block, np.float32)
        if block.ndim == 2:
            block = block.mean(axis=1)
        if block.size == 0:
            return
        self._samples.append(block)
        self.version += 1

    def mark_complete(self) -> None:
        self.complete = True
        self.version += 1

    # -- pyramid ---------------------------------------------------------------------------
    def refresh_peaks(self) -> None:
        """Bring the pyramid up to date with the samples (O(samples appended since last call))."""
        n = self.num_samples
        if n == self._peaks_n:
            return
        # level 0: rewrite from the first incomplete entry
        first = self._peaks_upto // BASE_BLOCK
        self._rewrite(self._levels[0], first, self.samples[first * BASE_BLOCK :], BASE_BLOCK, None)
        self._peaks_upto = (n // BASE_BLOCK) * BASE_BLOCK
        self._peaks_n = n
        # higher levels from the level below; add levels while the top one is still long
        k = 0
        while True:
            below = self._levels[k]
            if k + 1 == len(self._levels):
                if len(below) <= MIN_ENTRIES * FACTOR:
                    break
                self._levels.append(PeakLevel(below.block * FACTOR))
            level = self._levels[k + 1]
            self._rewrite(level, max(0, len(level) - 1), None, FACTOR, below)
            k += 1

    @staticmethod
    def _rewrite(level: PeakLevel, start: int, raw: np.ndarray | None, factor: int, below: PeakLevel | None) -> None:
        """Recompute entries from ``start`` on, from raw samples (level 0) or the level below."""
        level.mins.truncate(start)
        level.maxs.truncate(start)
        if raw is not None:
            lo_src = hi_src = raw
        else:
            lo_src = below.mins.data[start * factor :]
            hi_src = below.maxs.data[start * factor :]
        m = lo_src.shape[0]
        if m == 0:
            return
        full = (m // factor) * factor
        if full:
            level.mins.append(lo_src[:full].reshape(-1, factor).min(axis=1))
            level.maxs.append(hi_src[:full].reshape(-1, factor).max(axis=1))
        if full < m:
            level.mins.append(np.array([lo_src[full:].min()], np.float32))
            level.maxs.append(np.array([hi_src[full:].max()], np.float32))

    @property
    def levels(self) -> list[PeakLevel]:
        return self._levels

    def envelope(self, t0: float, t1: float, width_px: int) -> tuple[np.ndarray, np.ndarray]:
        """Polyline (x seconds, y amplitude) that draws [t0, t1] s at about ``width_px`` pixels.

        Zoomed in (fewer than ~2 samples per pixel) it is the samples themselves; zoomed out it is
        the min/max envelope of the coarsest pyramid level that still has ≥ 1 entry per pixel (so fewer
        than ``2 * FACTOR`` points per pixel), as a
        zig-zag (min, max per entry) so one pen stroke fills the envelope. Clipped to the view.
        """
        n = self.num_samples
        sr = self.sample_rate
        if n == 0 or t1 <= t0:
            return np.zeros(0), np.zeros(0)
        s0 = max(0, int(np.floor(t0 * sr)) - 1)
        s1 = min(n, int(np.ceil(t1 * sr)) + 2)
        if s1 <= s0:
            return np.zeros(0), np.zeros(0)
        per_px = (s1 - s0) / max(1, width_px)
        if per_px < 2 * BASE_BLOCK:
            y = self.samples[s0:s1]
            x = np.arange(s0, s1, dtype=np.float64) / sr
            return x, y
        self.refresh_peaks()
        level = self._levels[0]
        for candidate in self._levels:
            if candidate.block <= per_px:
                level = candidate
        b = level.block
        e0, e1 = s0 // b, min(len(level), -(-s1 // b))
        mins = level.mins.data[e0:e1]
        maxs = level.maxs.data[e0:e1]
        x = (np.arange(e0, e1, dtype=np.float64) + 0.5) * (b / sr)
        xs = np.repeat(x, 2)
        ys = np.empty(2 * mins.shape[0], np.float32)
        ys[0::2] = mins
        ys[1::2] = maxs
        return xs, ys


def load_track(path: str | os.PathLike, name: str | None = None) -> AudioTrack:
    """Decode ``path`` to mono and return it as a complete track with its pyramid built.

    Threads: call it in a worker (it reads the whole file and scans every sample); hand the track to
    the GUI thread afterwards. Raises the engine's ``AudioFileError`` for a missing or unreadable file.
    """
    from studio.engine.audio import files

    audio, sample_rate = files.load(path, mono=True)
    track = AudioTrack(sample_rate, audio, os.path.basename(path) if name is None else name)
    track.refresh_peaks()
    return track
