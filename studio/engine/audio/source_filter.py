"""A source-filter vocoder from the mel alone, by DSP: the baseline a neural excitation has to beat.

The LPC configurations of the bundled vocoders take the envelope from the mel (``audio.lpc``) and leave
the excitation to a network. This module makes the excitation by rule instead, as a classic LPC vocoder
does, from what the mel says:

1. per frame, the order-``order`` predictor and its prediction-error power (Levinson on the NNLS power
   spectrum, pre-emphasised; ``lpc``), turned into a per-sample variance (the power is of the
   Hann-windowed frame, so it is divided by the window's summed square);
2. the pitch and voicing read from the mel (``pitch.SourceTrack``): the F0 integrated to a phase, a unit
   impulse (scaled by the square root of the period, so the train has unit power) wherever the phase
   passes a whole turn;
3. excitation ``sqrt(variance) * (sqrt(v) * pulses + sqrt(1 - v) * noise)`` with Gaussian noise and the
   voicing ``v``;
4. through the mel's all-pole filter and de-emphasis (``lpc.Synthesis``).

Alone it sounds buzzy (the six held-out festvox-ru utterances: PESQ 1.60, STOI 0.884, MCD 5.21 dB, DNSMOS
3.13; its pitch within 12.5 cents of the original's); brought to the mel by the spectral projection
(``audio.projection``, 64 passes) it scores 3.52 / 0.985 / 2.91 / 3.30, as well as the best bundled
network does (docs/models.md). ``studio eval --source-filter N|off`` scores it beside a model.

Whole signals only (a baseline for evaluation, not a streaming model). numpy/torch on the calling thread.
"""

from __future__ import annotations

import numpy as np
import torch

from studio.engine.audio import lpc, pitch
from studio.engine.audio.features import FeatureProfile


def _window_power(profile: FeatureProfile) -> float:
    """Summed square of the analysis window (the factor between a frame's power spectrum and the
    per-sample power of the signal under it)."""
    return float((torch.hann_window(profile.win_length, periodic=True, dtype=torch.float64) ** 2).sum())


def frame_predictors(mel: torch.Tensor, profile: FeatureProfile, order: int) -> tuple[np.ndarray, np.ndarray]:
    """mel [n_mels, N] -> (predictor coefficients [N, order] float64, prediction-error variance per
    sample [N]) of the pre-emphasised signal (``lpc``'s convention)."""
    coefficients, err = lpc.predictor_and_error(mel, profile, order)
    return coefficients.numpy(), (err / _window_power(profile)).numpy()


def pulse_train(f0: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per-sample F0 [T] (Hz) -> impulses where the integrated phase passes a whole turn (the sample
    nearest the crossing), each ``sqrt(period in samples)`` high: unit power at any pitch."""
    turns = np.cumsum(f0 / sample_rate)
    crossing = np.flatnonzero(np.diff(np.floor(turns)) > 0) + 1  # first sample past each whole turn
    past = turns[crossing] - np.floor(turns[crossing])  # how far past the turn, in turns
    step = f0[crossing] / sample_rate  # turns per sample there
    nearest = np.where(past > 0.5 * step, crossing - 1, crossing)
    pulses = np.zeros(f0.shape[0])
    np.add.at(pulses, nearest, np.sqrt(sample_rate / f0[crossing]))
    return pulses


def synthesise(mel: np.ndarray, profile: FeatureProfile, order: int = lpc.DEFAULT_ORDER, seed: int = 0) -> np.ndarray:
    """mel [n_mels, N] of ``profile`` -> float32 audio [N * hop] in [-1, 1] (module doc)."""
    m = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float64))
    if m.dim() != 2 or m.shape[0] != profile.n_mels or m.shape[1] < 1:
        raise ValueError(f"need a mel [n_mels={profile.n_mels}, frames >= 1], got shape {tuple(m.shape)}")
    coefficients, variance = frame_predictors(m, profile, order)
    samples = m.shape[1] * profile.hop_length
    track = pitch.SourceTrack(m.unsqueeze(0), profile)
    f0, periodicity = track.contours(0, samples)
    f0, voiced = f0[0].numpy(), pitch.voicing(periodicity)[0].numpy()
    noise = np.random.default_rng(seed).standard_normal(samples)
    scale = np.sqrt(np.repeat(variance, profile.hop_length)[:samples])
    excitation = scale * (np.sqrt(voiced) * pulse_train(f0, profile.sample_rate) + np.sqrt(1.0 - voiced) * noise)
    audio = lpc.Synthesis(coefficients, profile.hop_length).process(excitation)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


__all__ = ["frame_predictors", "pulse_train", "synthesise"]
