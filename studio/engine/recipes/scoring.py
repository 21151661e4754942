"""How a recipe scores what it trained: copy synthesis for vocoders, spectral checks for free generation.

Pure numpy except where a model is run; safe on any thread that owns the model.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXTRA_METRIC_MODULES = {"pesq": "pesq", "stoi": "pystoi", "mcd": "pysptk", "dnsmos": "speechmos"}
ALWAYS_METRICS = ("lsd", "mrstft")
MUSIC_BAND_HZ = (50.0, 4000.0)


QUALITY_DIRECTIONS = {"pesq": 1.0, "stoi": 1.0, "mcd": -1.0, "dnsmos": 1.0}
"""The copy-synthesis metrics a run is judged by, and which way is better (+1: higher)."""
QUALITY_NOISE = {"pesq": 0.02, "stoi": 0.005, "mcd": 0.05, "dnsmos": 0.03}
"""How far apart two scorings of equally good models can land (sampling noise on two utterances):
smaller differences count as neither better nor worse."""


def copy_synthesis_regression(new: dict[str, Any], shipped: dict[str, Any]) -> list[str]:
    """The quality metrics on which recipe scores ``new`` are worse than ``shipped`` (a bundle card's
    ``metrics``) by more than ``QUALITY_NOISE``, as "name new vs shipped" strings — but only when they
    are worse on more than half of the metrics both have, scored on the same utterances; else []."""
    if not new.get("utterances") or new.get("utterances") != shipped.get("utterances"):
        return []
    a, b = new.get("model") or {}, shipped.get("model") or {}
    shared = [m for m in QUALITY_DIRECTIONS if isinstance(a.get(m), (int, float)) and isinstance(b.get(m), (int, float))]
    worse = [m for m in shared if (a[m] - b[m]) * QUALITY_DIRECTIONS[m] < -QUALITY_NOISE[m]]
    if 2 * len(worse) <= len(shared):
        return []
    return [f"{m} {a[m]:.3g} vs {b[m]:.3g}" for m in worse]


def available_metrics() -> list[str]:
    """The copy-synthesis metrics whose packages are installed here (lsd and mrstft always are)."""
    names = [m for m, module in EXTRA_METRIC_MODULES.items() if importlib.util.find_spec(module) is not None]
    if "mcd" in names and importlib.util.find_spec("pyworld") is None:
        names.remove("mcd")
    return names + list(ALWAYS_METRICS)


def power_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """|STFT|² of mono float audio with a Hann window: [frames, n_fft // 2 + 1] (float64)."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2


def spectral_flatness(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of geometric / arithmetic mean of the power spectrum (white noise ≈ 0.56 with a
    Hann window, a pure tone → 0); frames more than 40 dB below the loudest are left out."""
    power = power_spectrogram(audio, n_fft, hop) + 1e-20
    energy = power.sum(axis=1)
    keep = energy >= energy.max() * 1e-4
    p = power[keep]
    flat = np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)
    return float(np.mean(flat))


def peak_to_median_db(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Median over frames of (strongest bin − median bin) in dB: tonal sound stands far above its
    spectral floor (rendered piano ≈ 68 dB), white noise does not (≈ 10 dB); quiet frames left out."""
    power = power_spectrogram(audio, n_fft, hop) + 1e-20
    energy = power.sum(axis=1)
    db = 10.0 * np.log10(power[energy >= energy.max() * 1e-4])
    return float(np.median(db.max(axis=1) - np.median(db, axis=1)))


def band_energy_fraction(audio: np.ndarray, sample_rate: int, band: tuple[float, float] = MUSIC_BAND_HZ) -> float:
    """Fraction of the signal's energy between ``band`` Hz (1.0 = all of it)."""
    power = power_spectrogram(audio).sum(axis=0)
    freqs = np.fft.rfftfreq(1024, 1.0 / sample_rate)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(power[inside].sum() / max(power.sum(), 1e-20))


def rms_dbfs(audio: np.ndarray) -> float:
    x = np.asarray(audio, dtype=np.float64)
    return float(10.0 * np.log10(max(np.mean(x * x), 1e-20)))


def envelope_correlation(audio: np.ndarray, mel: np.ndarray, profile: Any) -> float:
    """Pearson correlation between the mel of ``audio`` and ``mel`` (both ln-mel of ``profile``), over the
    frames both cover: how well a vocoder's output follows the spectral envelope it was given."""
    from studio.engine.audio.features import compute_mel

    made = compute_mel(np.asarray(audio, dtype=np.float32), profile)
    n = min(made.shape[-1], mel.shape[-1])
    a, b = made[:, :n].reshape(-1).astype(np.float64), mel[:, :n].reshape(-1).astype(np.float64)
    return _correlation(a, b)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays; 0.0 when either is constant (e.g. a model that outputs
    silence: no linear relation, and NaN would not survive the card's JSON)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def loudness_contour_correlation(audio: np.ndarray, mel: np.ndarray, profile: Any) -> float:
    """Pearson correlation over frames of the band-averaged ln-mel of ``audio`` and of ``mel``: whether
    the output gets louder and quieter where the input does (the coarse part of the envelope)."""
    from studio.engine.audio.features import compute_mel

    made = compute_mel(np.asarray(audio, dtype=np.float32), profile)
    n = min(made.shape[-1], mel.shape[-1])
    return _correlation(made[:, :n].mean(axis=0), mel[:, :n].mean(axis=0))


def score_vocoder(model: Any, data: Path, utterances: int, seed: int = 0) -> dict[str, Any]:
    """Copy synthesis of the first ``utterances`` test items of prepared set ``data``: the model and
    Griffin-Lim (32 iterations) in the same run, every installed metric. Returns
    {"utterances": [...], "seconds": s, "metrics": [...], "model": means, "griffin_lim": means}."""
    from studio.engine.evaluation import copysynth

    items = copysynth.find_audio(data, split="test")[:utterances]
    metrics = available_metrics()
    vocoders = [
        copysynth.ModelVocoder(model, seed=seed, name="model"),
        copysynth.GriffinLimVocoder(model.profile, seed=seed),
    ]
    result = copysynth.copy_synthesis(items, vocoders, metrics, include_original=False)
    means = result.means()
    seconds = sum(r.seconds for r in result.per_utterance if r.system == "model")
    clean = {s: {k: round(float(v), 4) for k, v in means[s].items() if np.isfinite(v)} for s in ("model", copysynth.GRIFFIN_LIM)}
    return {
        "set": "festvox-ru test split (copy synthesis)",
        "utterances": result.utterances,
        "seconds": round(seconds, 2),
        "metrics": metrics,
        "model": clean["model"],
        "griffin_lim": clean[copysynth.GRIFFIN_LIM],
    }


def score_free_generation(audio: np.ndarray, sample_rate: int, reference: np.ndarray | None) -> dict[str, Any]:
    """Spectral checks of unconditioned output: flatness (vs the held-out music and vs white noise),
    energy in the musical band, level."""
    noise = np.random.default_rng(0).standard_normal(sample_rate * 2) * 0.1
    out = {
        "seconds": round(audio.size / sample_rate, 2),
        "flatness": round(spectral_flatness(audio), 4),
        "flatness_white_noise": round(spectral_flatness(noise), 4),
        "peak_to_median_db": round(peak_to_median_db(audio), 2),
        "peak_to_median_db_white_noise": round(peak_to_median_db(noise), 2),
        "band_energy_50_4000hz": round(band_energy_fraction(audio, sample_rate), 4),
        "rms_dbfs": round(rms_dbfs(audio), 2),
    }
    if reference is not None and reference.size:
        out["flatness_heldout_music"] = round(spectral_flatness(reference), 4)
        out["band_energy_heldout_music"] = round(band_energy_fraction(reference, sample_rate), 4)
        out["peak_to_median_db_heldout_music"] = round(peak_to_median_db(reference), 2)
    return out
