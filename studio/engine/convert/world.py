"""WORLD analysis and synthesis (through PyPI ``pyworld``): the DSP core of voice conversion.

WORLD splits speech into three parameter tracks sampled every ``frame_period_ms`` (5 ms):

- ``f0``  [T] float64, Hz; 0 where a frame is unvoiced;
- ``sp``  [T, fft_size // 2 + 1] float64, the smooth spectral envelope (power; CheapTrick);
- ``ap``  [T, fft_size // 2 + 1] float64 in [0, 1], the aperiodicity (D4C): how noisy each band is.

Resynthesis from unmodified tracks is close to transparent, and each track can be changed on its own:
pitch without touching duration or formants, the envelope without touching pitch, voicing without
touching either. F0 comes from DIO refined by StoneMask (Harvest is more robust but ~30× slower,
too slow for live use on two cores; ``f0_method="harvest"`` selects it for offline work).

Everything here runs on the calling thread (a worker), allocates freely and never touches a device.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np

DEFAULT_FRAME_PERIOD_MS = 5.0
DEFAULT_F0_FLOOR = 60.0
DEFAULT_F0_CEIL = 600.0
F0_METHODS = ("dio", "harvest")


class ConversionError(Exception):
    """Base of the voice-conversion errors a user can meet; the message says what to do."""


class MissingDependencyError(ConversionError, ImportError):
    """An optional package the conversion needs is not installed."""


def pyworld() -> ModuleType:
    """The ``pyworld`` module, imported on first use; MissingDependencyError naming the fix otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyworld imports pkg_resources (deprecated) at import time
            import pyworld as module
    except ImportError as exc:
        raise MissingDependencyError(
            f"voice conversion needs the WORLD vocoder (PyPI pyworld): {exc}; install it with "
            "`pip install 'waveform-studio[voice]'` (or run scripts/setup-data)"
        ) from exc
    return module


@dataclass(frozen=True)
class WorldFeatures:
    """One utterance as WORLD tracks (see the module docstring for shapes and units).

    ``num_samples`` is the length of the analysed audio, so a resynthesis can be cut to exactly the
    input's duration.
    """

    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    sample_rate: int
    frame_period_ms: float
    num_samples: int

    @property
    def frames(self) -> int:
        return int(self.f0.shape[0])

    @property
    def fft_size(self) -> int:
        return 2 * (self.sp.shape[1] - 1)

    @property
    def voiced(self) -> np.ndarray:
        """Boolean mask [T] of voiced frames."""
        return self.f0 > 0

    def with_tracks(self, **tracks: np.ndarray) -> WorldFeatures:
        """A copy with some of ``f0``, ``sp``, ``ap`` replaced (same number of frames)."""
        out = replace(self, **tracks)
        if not out.f0.shape[0] == out.sp.shape[0] == out.ap.shape[0]:
            raise ValueError(f"track lengths differ: f0 {out.f0.shape}, sp {out.sp.shape}, ap {out.ap.shape}")
        return out


def _as_mono_float64(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"audio must be [T] or [T, C], got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float64)


def analyze(
    audio: np.ndarray,
    sample_rate: int,
    *,
    frame_period_ms: float = DEFAULT_FRAME_PERIOD_MS,
    f0_floor: float = DEFAULT_F0_FLOOR,
    f0_ceil: float = DEFAULT_F0_CEIL,
    f0_method: str = "dio",
) -> WorldFeatures:
    """WORLD tracks of ``audio`` (float [T] or [T, C], averaged to mono) at ``sample_rate`` Hz.

    Frames sit every ``frame_period_ms`` starting at sample 0: ``T // (sr·period) + 1`` of them.
    F0 is searched in [f0_floor, f0_ceil] Hz. ValueError for an empty signal or unknown method.
    """
    if f0_method not in F0_METHODS:
        raise ValueError(f"f0_method must be one of {F0_METHODS}, got {f0_method!r}")
    x = _as_mono_float64(audio)
    if x.shape[0] < 16:
        raise ValueError(f"audio too short to analyse: {x.shape[0]} samples")
    pw = pyworld()
    sr = int(sample_rate)
    if f0_method == "harvest":
        f0, t = pw.harvest(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    else:
        f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
        f0 = pw.stonemask(x, f0, t, sr)
    fft_size = pw.get_cheaptrick_fft_size(sr, f0_floor)
    sp = pw.cheaptrick(x, f0, t, sr, f0_floor=f0_floor, fft_size=fft_size)
    ap = pw.d4c(x, f0, t, sr, fft_size=fft_size)
    return WorldFeatures(f0=f0, sp=sp, ap=ap, sample_rate=sr, frame_period_ms=float(frame_period_ms), num_samples=x.shape[0])


def synthesize(features: WorldFeatures) -> np.ndarray:
    """Audio from WORLD tracks: float32 [num_samples] at ``features.sample_rate`` (not clipped)."""
    pw = pyworld()
    f = features
    y = pw.synthesize(
        np.ascontiguousarray(f.f0, dtype=np.float64),
        np.ascontiguousarray(f.sp, dtype=np.float64),
        np.ascontiguousarray(np.clip(f.ap, 0.0, 1.0), dtype=np.float64),
        f.sample_rate,
        f.frame_period_ms,
    )
    out = np.zeros(f.num_samples, dtype=np.float32)
    n = min(f.num_samples, y.shape[0])
    out[:n] = y[:n]
    return out


def code_envelope(sp: np.ndarray, sample_rate: int, dims: int) -> np.ndarray:
    """Spectral envelope [T, F] → ``dims`` mel-cepstral coefficients per frame, float64 [T, dims].

    WORLD's own coding (log power on a mel-warped axis, then a DCT): coefficient 0 is the log level,
    1… the envelope's shape from coarse to fine; invertible by :func:`decode_envelope` up to smoothing.
    """
    pw = pyworld()
    return pw.code_spectral_envelope(np.ascontiguousarray(sp, dtype=np.float64), int(sample_rate), int(dims))


def decode_envelope(coded: np.ndarray, sample_rate: int, fft_size: int) -> np.ndarray:
    """Inverse of :func:`code_envelope`: [T, dims] → power envelope [T, fft_size // 2 + 1]."""
    pw = pyworld()
    return pw.decode_spectral_envelope(np.ascontiguousarray(coded, dtype=np.float64), int(sample_rate), int(fft_size))


def code_aperiodicity(ap: np.ndarray, sample_rate: int) -> np.ndarray:
    """Aperiodicity [T, F] → WORLD's band aperiodicity in dB, [T, bands] (bands grow with the rate)."""
    pw = pyworld()
    return pw.code_aperiodicity(np.ascontiguousarray(ap, dtype=np.float64), int(sample_rate))


def decode_aperiodicity(coded: np.ndarray, sample_rate: int, fft_size: int) -> np.ndarray:
    """Inverse of :func:`code_aperiodicity`: [T, bands] → [T, fft_size // 2 + 1] in [0, 1]."""
    pw = pyworld()
    return pw.decode_aperiodicity(np.ascontiguousarray(coded, dtype=np.float64), int(sample_rate), int(fft_size))


def analyze_frames(
    audio: np.ndarray,
    sample_rate: int,
    first: int,
    count: int,
    *,
    frame_period_ms: float = DEFAULT_FRAME_PERIOD_MS,
    f0_floor: float = DEFAULT_F0_FLOOR,
    f0_ceil: float = DEFAULT_F0_CEIL,
) -> WorldFeatures:
    """Tracks of only frames ``first … first + count - 1`` of ``audio`` (the live path's window).

    F0 is tracked by DIO over the whole signal (it needs context to decide voicing), then refined,
    and the envelope and aperiodicity are estimated for the selected frames only (cheaper).
    The result's ``num_samples`` is ``count · frame period``.
    """
    pw = pyworld()
    x = _as_mono_float64(audio)
    sr = int(sample_rate)
    f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    if first < 0 or first + count > f0.shape[0]:
        raise ValueError(f"frames {first}…{first + count - 1} outside the {f0.shape[0]} frames of the signal")
    sel = slice(first, first + count)
    f0s, ts = np.ascontiguousarray(f0[sel]), np.ascontiguousarray(t[sel])
    f0s = pw.stonemask(x, f0s, ts, sr)
    fft_size = pw.get_cheaptrick_fft_size(sr, f0_floor)
    sp = pw.cheaptrick(x, f0s, ts, sr, f0_floor=f0_floor, fft_size=fft_size)
    ap = pw.d4c(x, f0s, ts, sr, fft_size=fft_size)
    period = int(round(sr * frame_period_ms / 1000.0))
    return WorldFeatures(f0=f0s, sp=sp, ap=ap, sample_rate=sr, frame_period_ms=float(frame_period_ms), num_samples=count * period)
