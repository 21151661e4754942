"""Short-time spectra for the spectrogram view: pure numpy, callable from any thread.

Kept out of ``studio/ui`` (widgets never do DSP) and out of ``studio/engine`` (this is a display
transform, not a model feature: the model's mel lives in ``engine.audio.features``).

Units: audio float32 in [-1, 1]; frequencies in Hz; levels in dB relative to a full-scale sine
(a 0 dBFS sine peaks at about 0 dB whatever the window and FFT size). Images are row-major float32
``[rows, columns]`` — row 0 is the lowest frequency, column j starts at sample ``start + j * hop``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy.signal import get_window

WINDOWS = ("hann", "hamming", "blackman", "boxcar")
SCALES = ("linear", "log", "mel")
COLORMAPS = ("inferno", "magma", "viridis", "plasma")
FFT_SIZES = (256, 512, 1024, 2048, 4096)
SCALED_ROWS = 256  # display rows of the log and mel scales
LOG_FMIN = 20.0  # Hz, bottom of the log scale


@dataclass(frozen=True)
class SpectrogramSettings:
    """What the spectrogram shows. ``hop`` in samples; ``db_range`` is the span below 0 dB shown."""

    n_fft: int = 1024
    hop: int = 256
    window: str = "hann"
    scale: str = "linear"
    db_range: float = 90.0
    colormap: str = "inferno"

    def __post_init__(self) -> None:
        if self.n_fft < 16 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of two ≥ 16, got {self.n_fft}")
        if not 1 <= self.hop <= self.n_fft:
            raise ValueError(f"hop must be in [1, n_fft={self.n_fft}], got {self.hop}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if not 10 <= self.db_range <= 200:
            raise ValueError(f"db_range must be in [10, 200] dB, got {self.db_range}")

    def with_(self, **changes) -> SpectrogramSettings:
        return replace(self, **changes)


# -- frequency scales: y coordinate in the plot <-> Hz ------------------------------------------
def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def to_axis(hz, scale: str):
    """Hz -> the plot's y coordinate: Hz (linear), log10 Hz (log) or mel (mel)."""
    hz = np.asarray(hz, np.float64)
    if scale == "linear":
        return hz
    if scale == "log":
        return np.log10(np.maximum(hz, 1e-3))
    return hz_to_mel(hz)


def from_axis(y, scale: str):
    """The plot's y coordinate -> Hz."""
    y = np.asarray(y, np.float64)
    if scale == "linear":
        return y
    if scale == "log":
        return 10.0**y
    return mel_to_hz(y)


def axis_range(sample_rate: int, scale: str) -> tuple[float, float]:
    """(bottom, top) of the y axis for a sample rate."""
    nyquist = sample_rate / 2.0
    lo = LOG_FMIN if scale == "log" else 0.0
    return float(to_axis(lo, scale)), float(to_axis(nyquist, scale))


@lru_cache(maxsize=32)
def _row_matrix(n_fft: int, sample_rate: int, scale: str) -> np.ndarray | None:
    """[rows, bins] weights that resample linear FFT bins onto evenly spaced scale rows (None = linear)."""
    if scale == "linear":
        return None
    bins = n_fft // 2 + 1
    lo, hi = axis_range(sample_rate, scale)
    edges = np.linspace(lo, hi, SCALED_ROWS + 1)
    centres_hz = from_axis((edges[:-1] + edges[1:]) / 2.0, scale)
    pos = centres_hz / (sample_rate / n_fft)  # fractional bin of each row
    weights = np.zeros((SCALED_ROWS, bins), np.float32)
    i0 = np.clip(np.floor(pos).astype(int), 0, bins - 2)
    frac = np.clip(pos - i0, 0.0, 1.0)
    rows = np.arange(SCALED_ROWS)
    weights[rows, i0] = 1.0 - frac
    weights[rows, i0 + 1] = frac
    # where a row spans several bins, average their power instead of sampling two of them
    lo_hz, hi_hz = from_axis(edges[:-1], scale), from_axis(edges[1:], scale)
    for r in range(SCALED_ROWS):
        b0, b1 = int(math.ceil(lo_hz[r] * n_fft / sample_rate)), int(hi_hz[r] * n_fft / sample_rate)
        if b1 - b0 >= 2:
            weights[r] = 0.0
            weights[r, b0 : min(b1, bins - 1) + 1] = 1.0 / (min(b1, bins - 1) + 1 - b0)
    return weights


@lru_cache(maxsize=16)
def _window(name: str, n_fft: int) -> np.ndarray:
    return get_window(name, n_fft, fftbins=True).astype(np.float32)


def column_count(num_samples: int, hop: int) -> int:
    """Columns of a spectrogram of ``num_samples`` with frame starts every ``hop`` samples (centred)."""
    return 0 if num_samples <= 0 else num_samples // hop + 1


def spectrogram_db(
    audio: np.ndarray, sample_rate: int, settings: SpectrogramSettings, first_column: int, columns: int, hop: int
) -> np.ndarray:
    """dB image float32 [rows, columns] of frames centred on samples ``(first_column + j) * hop``.

    ``hop`` may be larger than ``settings.hop`` (a coarse overview of a long file: frames are
    then taken every ``hop`` samples, not averaged). Samples outside the audio count as silence.
    Rows: ``n_fft // 2 + 1`` linear bins, or ``SCALED_ROWS`` for the log and mel scales.
    """
    n_fft = settings.n_fft
    window = _window(settings.window, n_fft)
    if columns <= 0:
        rows = n_fft // 2 + 1 if settings.scale == "linear" else SCALED_ROWS
        return np.zeros((rows, 0), np.float32)
    centres = (first_column + np.arange(columns, dtype=np.int64)) * hop
    starts = centres - n_fft // 2
    lo, hi = int(starts[0]), int(starts[-1]) + n_fft
    n = audio.shape[0]
    segment = np.zeros(hi - lo, np.float32)
    a0, a1 = max(lo, 0), min(hi, n)
    if a1 > a0:
        segment[a0 - lo : a1 - lo] = audio[a0:a1]
    offsets = (starts - lo)[:, None] + np.arange(n_fft)[None, :]
    frames = segment[offsets] * window  # [columns, n_fft]
    spectrum = np.fft.rfft(frames, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32).T  # [bins, columns]
    # a full-scale sine gives |X| = sum(window) / 2 at its bin
    power *= 4.0 / float(window.sum()) ** 2
    weights = _row_matrix(n_fft, sample_rate, settings.scale)
    if weights is not None:
        power = weights @ power
    return (10.0 * np.log10(power + 1e-12)).astype(np.float32)
