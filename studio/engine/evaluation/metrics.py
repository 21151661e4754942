"""Objective quality metrics for resynthesised speech.

Every function takes mono float audio in [-1, 1] as 1-D numpy arrays and the sample rate in Hz. The
intrusive metrics compare a reference ``ref`` (the original recording) with a degraded or resynthesised
``deg`` that is time-aligned with it (copy synthesis keeps the timing); both are cut to the shorter
length first, so a trailing hop of difference does not matter. Signals at another rate are resampled
(soxr) to the rate each metric is defined at.

| metric | function | range, unit | better | needs |
|---|---|---|---|---|
| PESQ wide band (ITU-T P.862.2) | ``pesq_wb`` | 1.04–4.64 MOS-LQO | higher | ``pesq`` |
| STOI (short-time objective intelligibility) | ``stoi`` | 0–1 (ESTOI: ``extended=True``) | higher | ``pystoi`` |
| mel-cepstral distortion | ``mcd`` | dB, 0 = identical | lower | ``pyworld``, ``pysptk`` |
| DNSMOS P.835 overall (no reference) | ``dnsmos_ovrl`` | 1–5 MOS | higher | ``speechmos``, ``onnxruntime`` |
| pitch error | ``f0_error_cents`` | cents, median over frames both call voiced | lower | ``pyworld`` |
| voicing error | ``voicing_error`` | fraction of frames voiced in one only | lower | ``pyworld`` |
| log-spectral distance | ``log_spectral_distance`` | bels (log10 power), 0 = identical | lower | numpy |
| multi-resolution STFT distance | ``mrstft_distance`` | unitless, 0 = identical | lower | numpy |

The first six need the optional extra (``pip install -e .[eval]``); a missing package raises
``MissingExtraError`` (an ``ImportError``) that names that command. PESQ and STOI barely notice a missing
high band: score bandwidth extension with the log-spectral distance and MCD.
"""

from __future__ import annotations

import math

import numpy as np

from studio.engine.audio.resample import resample
from studio.engine.evaluation import dnsmos
from studio.engine.evaluation.extras import MissingExtraError, require

__all__ = [
    "SCORING_RATE",
    "MissingExtraError",
    "align_lengths",
    "dnsmos_ovrl",
    "dnsmos_scores",
    "f0_error_cents",
    "log_spectral_distance",
    "mcd",
    "mcep_alpha",
    "mrstft_distance",
    "pesq_wb",
    "stoi",
    "voicing_error",
]

SCORING_RATE = 16_000
"""The rate PESQ-wb and DNSMOS are defined at, and the rate ``studio eval`` scores everything at."""

MCD_ORDER = 24
MCD_FRAME_PERIOD_MS = 5.0
MCD_RANGE_DB = 40.0
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # dB per unit of Euclidean mel-cepstral distance


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be mono audio, a 1-D array; got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or Inf samples")
    return a


def align_lengths(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 1-D arrays, cut to the shorter of the two lengths."""
    r, d = _mono(ref, "ref"), _mono(deg, "deg")
    n = min(r.size, d.size)
    return r[:n], d[:n]


def _at_rate(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    return x if sr == target else resample(x.astype(np.float32), sr, target).astype(np.float64)


# -- PESQ, STOI ------------------------------------------------------------------------------------
def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Wide-band PESQ (P.862.2) of ``deg`` against ``ref``, scored at 16 kHz: MOS-LQO 1.04–4.64.

    Expects at least about 0.25 s of speech; raises ``ValueError`` when PESQ finds no utterance.
    """
    pesq = require("pesq", "PESQ")
    r, d = align_lengths(ref, deg)
    r, d = _at_rate(r, sr, SCORING_RATE), _at_rate(d, sr, SCORING_RATE)
    n = min(r.size, d.size)
    try:
        return float(pesq.pesq(SCORING_RATE, r[:n], d[:n], "wb"))
    except pesq.PesqError as exc:  # NoUtterancesError, BufferTooShortError
        raise ValueError(f"PESQ could not score this pair: {type(exc).__name__}: {exc}") from exc


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended=True``) of ``deg`` against ``ref``: 0–1, higher is more intelligible.

    pystoi resamples to its own 10 kHz internally and drops silent frames of the reference.
    """
    pystoi = require("pystoi", "STOI")
    r, d = align_lengths(ref, deg)
    return float(pystoi.stoi(r, d, int(sr), extended=extended))


# -- mel-cepstral distortion -----------------------------------------------------------------------
MCEP_ALPHAS = {8000: 0.31, 10000: 0.35, 12000: 0.37, 16000: 0.42, 22050: 0.45, 24000: 0.46,
               32000: 0.50, 44100: 0.53, 48000: 0.55}
"""The customary all-pass constants of SPTK-based tools (merlin, nnmnkwii) per sample rate."""


def mcep_alpha(sr: int) -> float:
    """The all-pass constant that makes the mel-cepstrum follow the mel scale at ``sr`` Hz.

    The customary value where there is one (0.42 at 16 kHz, 0.45 at 22.05 kHz: ``MCEP_ALPHAS``), else
    pysptk's least-squares fit to the mel scale.
    """
    if int(sr) in MCEP_ALPHAS:
        return MCEP_ALPHAS[int(sr)]
    pysptk = require("pysptk", "MCD")
    return float(pysptk.util.mcepalpha(int(sr)))


def _world_mcep(x: np.ndarray, sr: int, order: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """WORLD spectral envelope → mel-cepstrum: returns (mcep [frames, order + 1], frame power in dB)."""
    pyworld = require("pyworld", "MCD")
    pysptk = require("pysptk", "MCD")
    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, frame_period=MCD_FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, t, sr)
    sp = pyworld.cheaptrick(x, f0, t, sr)  # power spectral envelope [frames, n_fft // 2 + 1]
    mc = pysptk.sp2mc(sp, order=order, alpha=alpha)
    power_db = 10.0 * np.log10(np.maximum(sp.sum(axis=1), 1e-20))
    return mc, power_db


def _dtw_path(cost: np.ndarray) -> np.ndarray:
    """Monotonic alignment of every reference frame i to one degraded frame j(i).

    Steps (i-1, j), (i-1, j-1), (i-1, j-2): the degraded side may run up to twice as fast or hold still;
    the path starts at (0, 0) and ends at the last frame of both. cost: [N, M] with M <= 2N - 1.
    Returns j for each i, [N] int.
    """
    n, m = cost.shape
    if m > 2 * n - 1:
        raise ValueError(f"DTW cannot align {m} degraded frames to {n} reference frames (more than twice as many)")
    acc = np.full((n, m), np.inf)
    back = np.zeros((n, m), dtype=np.int8)
    acc[0, 0] = cost[0, 0]
    for i in range(1, n):
        prev = acc[i - 1]
        choices = np.stack([prev, np.r_[np.inf, prev[:-1]], np.r_[np.inf, np.inf, prev[:-2]]])
        back[i] = np.argmin(choices, axis=0)
        acc[i] = cost[i] + choices[back[i], np.arange(m)]
    if not np.isfinite(acc[-1, -1]):
        raise ValueError("DTW found no path between these signals")
    path = np.empty(n, dtype=np.int64)
    j = m - 1
    for i in range(n - 1, -1, -1):
        path[i] = j
        j -= int(back[i, j])
    return path


def mcd(
    ref: np.ndarray,
    deg: np.ndarray,
    sr: int,
    order: int = MCD_ORDER,
    alpha: float | None = None,
    align: str = "time",
    range_db: float = MCD_RANGE_DB,
) -> float:
    """Mel-cepstral distortion in dB (0 = identical; lower is better).

    Each signal is analysed with WORLD (DIO + StoneMask F0, CheapTrick spectral envelope, 5 ms frames)
    at ``sr``; ``pysptk.sp2mc`` turns the envelope into a mel-cepstrum of ``order`` (24) with all-pass
    constant ``alpha`` (default: ``mcep_alpha(sr)``, 0.42 at 16 kHz). Per frame,
    MCD = 10 / ln 10 · sqrt(2 · Σ_{d=1..order} (c_d − ĉ_d)²) — the energy term c_0 is left out — averaged
    over the reference's frames within ``range_db`` (40 dB) of its loudest frame (silence is not scored).

    align="time" compares frame t with frame t: right for copy synthesis, where the resynthesis keeps the
    original timing. align="dtw" first aligns the frames by dynamic time warping on the mel-cepstra
    (for systems that change timing, e.g. text-to-speech), which can only lower the number.
    """
    if align not in ("time", "dtw"):
        raise ValueError(f"align must be 'time' or 'dtw', got {align!r}")
    r, d = (_mono(ref, "ref"), _mono(deg, "deg")) if align == "dtw" else align_lengths(ref, deg)
    a = mcep_alpha(sr) if alpha is None else float(alpha)
    mc_r, power_r = _world_mcep(r, int(sr), order, a)
    mc_d, _ = _world_mcep(d, int(sr), order, a)
    if align == "time":
        n = min(len(mc_r), len(mc_d))
        mc_r, mc_d, power_r = mc_r[:n], mc_d[:n], power_r[:n]
    else:
        diff = mc_r[:, None, 1:] - mc_d[None, :, 1:]
        path = _dtw_path(np.sqrt(np.sum(diff * diff, axis=-1)))
        mc_d = mc_d[path]
    keep = power_r >= power_r.max() - range_db
    delta = mc_r[keep, 1:] - mc_d[keep, 1:]
    return float(_MCD_SCALE * np.mean(np.sqrt(np.sum(delta * delta, axis=1))))


# -- pitch -----------------------------------------------------------------------------------------
def _f0_pair(ref: np.ndarray, deg: np.ndarray, sr: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """WORLD F0 (DIO + StoneMask, 5 ms frames, 60-400 Hz; 0 = unvoiced) of both signals, frame t with
    frame t (the resynthesis keeps the timing): two arrays of equal length."""
    pyworld = require("pyworld", what)
    r, d = align_lengths(ref, deg)
    tracks = []
    for x in (r, d):
        x = np.ascontiguousarray(x, dtype=np.float64)
        f0, t = pyworld.dio(x, int(sr), f0_floor=60.0, f0_ceil=400.0, frame_period=MCD_FRAME_PERIOD_MS)
        tracks.append(pyworld.stonemask(x, f0, t, int(sr)))
    n = min(len(tracks[0]), len(tracks[1]))
    return tracks[0][:n], tracks[1][:n]


def f0_error_cents(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Pitch error: the median |1200 log2(F0_deg / F0_ref)| in cents over the frames both signals'
    WORLD tracks call voiced (0 = the same pitch; a semitone is 100). NaN when no frame is voiced in
    both. Griffin-Lim keeps the pitch of held-out speech to about 14 cents."""
    f_ref, f_deg = _f0_pair(ref, deg, sr, "the pitch error")
    both = (f_ref > 0) & (f_deg > 0)
    if not both.any():
        return float("nan")
    return float(np.median(np.abs(1200.0 * np.log2(f_deg[both] / f_ref[both]))))


def voicing_error(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Voicing error: the fraction of frames (0-1) that one signal's WORLD track calls voiced and the
    other's unvoiced, over the frames within 40 dB of the reference's loudest (silence not scored)."""
    f_ref, f_deg = _f0_pair(ref, deg, sr, "the voicing error")
    r, _ = align_lengths(ref, deg)
    hop = int(round(sr * MCD_FRAME_PERIOD_MS / 1000.0))
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(r, (hop, hop)), 2 * hop)[::hop][: len(f_ref)]
    n = min(len(frames), len(f_ref))
    level = 10.0 * np.log10(np.maximum((frames[:n].astype(np.float64) ** 2).mean(axis=1), 1e-20))
    keep = level >= level.max() - MCD_RANGE_DB
    return float(np.mean((f_ref[:n][keep] > 0) != (f_deg[:n][keep] > 0)))


# -- DNSMOS ----------------------------------------------------------------------------------------
def dnsmos_scores(audio: np.ndarray, sr: int) -> dnsmos.DnsmosScores:
    """DNSMOS P.835 SIG, BAK and OVRL (1–5 MOS) of ``audio``, resampled to 16 kHz. No reference needed."""
    x = _mono(audio, "audio")
    return dnsmos.score(np.clip(_at_rate(x, int(sr), SCORING_RATE), -1.0, 1.0))


def dnsmos_ovrl(audio: np.ndarray, sr: int) -> float:
    """DNSMOS P.835 overall quality (1–5 MOS, higher is better) of ``audio``; no reference needed.

    The metric that best separates neural vocoders from Griffin-Lim (see docs/models.md).
    """
    return dnsmos_scores(audio, sr).ovrl


# -- spectral distances (numpy only) ---------------------------------------------------------------
def _stft_magnitude(x: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """|STFT| of a 1-D signal, Hann window of ``win`` samples zero-padded to ``n_fft``: [frames, n_fft//2+1]."""
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad), mode="reflect" if x.size > pad else "constant")
    if xp.size < n_fft:
        xp = np.pad(xp, (0, n_fft - xp.size))
    frames = 1 + (xp.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = np.hanning(win + 1)[:-1] if win > 1 else 1.0
    return np.abs(np.fft.rfft(xp[idx] * window, axis=1))


def log_spectral_distance(
    ref: np.ndarray, deg: np.ndarray, sr: int, n_fft: int | None = None, hop: int | None = None
) -> float:
    """Log-spectral distance in bels (log10 of power; multiply by 10 for dB); 0 = identical.

    LSD = mean over frames of sqrt(mean over frequency bins of (log10 P_ref − log10 P_deg)²), with power
    spectra from a Hann STFT (default 2048 / hop 512 samples at any rate ≤ 48 kHz is scaled to ~43 ms /
    ~11 ms) and a 1e-10 power floor — the form used to score bandwidth extension. All frames count.
    """
    r, d = align_lengths(ref, deg)
    n_fft = n_fft or int(2 ** round(math.log2(0.0427 * sr)))
    hop = hop or n_fft // 4
    pr = _stft_magnitude(r, n_fft, hop, n_fft) ** 2
    pd = _stft_magnitude(d, n_fft, hop, n_fft) ** 2
    diff = np.log10(np.maximum(pr, 1e-10)) - np.log10(np.maximum(pd, 1e-10))
    return float(np.mean(np.sqrt(np.mean(diff * diff, axis=1))))


MRSTFT_WINDOWS_MS = (16.0, 32.0, 64.0)
"""Window lengths of the multi-resolution STFT distance; n_fft is the power of two nearest each, hop a quarter."""


def mrstft_distance(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Multi-resolution STFT distance (unitless; 0 = identical; lower is better).

    For each of three resolutions (Hann windows of about 16, 32 and 64 ms, hop a quarter window), the
    spectral convergence ‖|S_ref| − |S_deg|‖_F / ‖|S_ref|‖_F plus the mean absolute difference of the
    natural-log magnitudes (floor 1e-7), averaged over the resolutions — the loss Parallel WaveGAN trains
    with, used here as a distance.
    """
    r, d = align_lengths(ref, deg)
    total = 0.0
    for ms in MRSTFT_WINDOWS_MS:
        n_fft = int(2 ** round(math.log2(ms / 1000.0 * sr)))
        mag_r = _stft_magnitude(r, n_fft, n_fft // 4, n_fft)
        mag_d = _stft_magnitude(d, n_fft, n_fft // 4, n_fft)
        convergence = np.linalg.norm(mag_r - mag_d) / max(float(np.linalg.norm(mag_r)), 1e-12)
        log_l1 = np.mean(np.abs(np.log(np.maximum(mag_r, 1e-7)) - np.log(np.maximum(mag_d, 1e-7))))
        total += convergence + log_l1
    return float(total / len(MRSTFT_WINDOWS_MS))
