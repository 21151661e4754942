"""Sample-rate conversion with soxr: whole signals at once, or block by block for streams.

Audio is float32, shaped ``[T]`` (mono) or ``[T, C]`` (channels last), samples in [-1, 1].
Quality is soxr's 'HQ' (20-bit, 95 % bandwidth, linear phase) unless told otherwise.
"""

from __future__ import annotations

import numpy as np
import soxr

DEFAULT_QUALITY = "HQ"
MIN_RATE = 1
MAX_RATE = 768_000 * 4


def _check_rate(name: str, rate: float) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)):
        raise TypeError(f"{name} must be a number of Hz, got {type(rate).__name__}")
    if not np.isfinite(rate) or rate < MIN_RATE or rate > MAX_RATE or int(rate) != rate:
        raise ValueError(f"{name} must be a whole number of Hz in [{MIN_RATE}, {MAX_RATE}], got {rate}")
    return int(rate)


def resample(audio: np.ndarray, from_sr: int, to_sr: int, quality: str = DEFAULT_QUALITY) -> np.ndarray:
    """Resample ``audio`` ([T] or [T, C], any float/int dtype) from ``from_sr`` to ``to_sr`` Hz.

    Returns float32 with the same number of dimensions; the output has ``round(T * to_sr / from_sr)``
    frames (soxr's length, delay compensated). Equal rates return a float32 copy. Runs in the caller's thread.
    """
    from_sr = _check_rate("from_sr", from_sr)
    to_sr = _check_rate("to_sr", to_sr)
    x = np.asarray(audio)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be [T] or [T, C], got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if from_sr == to_sr:
        return x.copy()
    if x.shape[0] == 0:
        return np.zeros((0,) + x.shape[1:], dtype=np.float32)
    y = soxr.resample(x, from_sr, to_sr, quality=quality)
    return np.ascontiguousarray(y, dtype=np.float32)


class StreamResampler:
    """Block-by-block resampling for streams (the player, live conversion).

    ``process(block)`` takes float32 ``[n]`` or ``[n, channels]`` and returns the output produced so far
    (same dimensionality; soxr holds back a few milliseconds of delay). Pass ``last=True`` with the final
    block (it may be empty) to flush the tail. The concatenated output equals :func:`resample` of the
    whole signal to within float rounding. Not thread-safe: use it from one thread (the worker), never
    from the audio callback (it allocates).
    """

    def __init__(self, from_sr: int, to_sr: int, channels: int = 1, quality: str = DEFAULT_QUALITY) -> None:
        self.from_sr = _check_rate("from_sr", from_sr)
        self.to_sr = _check_rate("to_sr", to_sr)
        if not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = int(channels)
        self.quality = quality
        self._passthrough = self.from_sr == self.to_sr
        self._stream = (
            None
            if self._passthrough
            else soxr.ResampleStream(self.from_sr, self.to_sr, self.channels, dtype="float32", quality=quality)
        )
        self._finished = False

    @property
    def ratio(self) -> float:
        """Output samples per input sample."""
        return self.to_sr / self.from_sr

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed one block; returns the resampled samples available now (possibly none)."""
        if self._finished:
            raise RuntimeError("this StreamResampler was flushed with last=True; call reset() to reuse it")
        x = np.asarray(block, dtype=np.float32)
        squeeze = x.ndim == 1
        if squeeze:
            if self.channels != 1:
                raise ValueError(f"block is mono [n] but the resampler has {self.channels} channels")
            x = x[:, None]
        elif x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"block must be [n, {self.channels}], got shape {x.shape}")
        if last:
            self._finished = True
        if self._passthrough:
            y = x.copy()
        else:
            y = self._stream.resample_chunk(np.ascontiguousarray(x), last=last)
            y = np.asarray(y, dtype=np.float32).reshape(-1, self.channels)
        return y[:, 0].copy() if squeeze else y

    def reset(self) -> None:
        """Forget all buffered input so the resampler can start a new stream."""
        if self._stream is not None:
            self._stream.clear()
        self._finished = False
