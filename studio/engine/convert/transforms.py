"""Transformations of the speaker's own voice on WORLD tracks: pitch, formants, whisper.

Each function takes and returns :class:`WorldFeatures` with the same frames, so duration never
changes; they compose (``apply_transform`` runs them in a fixed order). Pure numpy, any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.engine.convert.world import WorldFeatures

PITCH_LIMIT_SEMITONES = 24.0
FORMANT_RATIO_RANGE = (0.5, 2.0)
# Whisper: energy below this frequency is turned down (a whisper has no voicing bar / chest resonance).
WHISPER_TILT_HZ = 500.0
WHISPER_TILT_DB = 12.0


@dataclass(frozen=True)
class VoiceTransform:
    """A change of one's own voice.

    pitch_semitones: F0 shift in semitones (+12 = an octave up), within ±24; formants stay.
    formant_ratio: scales the spectral envelope's frequency axis: 1.15 moves every formant 15 % up
        (a smaller vocal tract, "younger/brighter"), 0.87 down; within [0.5, 2].
    whisper: render without voicing (noise excitation through the same envelope).
    """

    pitch_semitones: float = 0.0
    formant_ratio: float = 1.0
    whisper: bool = False

    def __post_init__(self) -> None:
        if not np.isfinite(self.pitch_semitones) or abs(self.pitch_semitones) > PITCH_LIMIT_SEMITONES:
            raise ValueError(
                f"pitch shift must be within ±{PITCH_LIMIT_SEMITONES:g} semitones, got {self.pitch_semitones}"
            )
        lo, hi = FORMANT_RATIO_RANGE
        if not (np.isfinite(self.formant_ratio) and lo <= self.formant_ratio <= hi):
            raise ValueError(f"formant ratio must be in [{lo}, {hi}] (1 = unchanged), got {self.formant_ratio}")

    @property
    def is_identity(self) -> bool:
        return self.pitch_semitones == 0.0 and self.formant_ratio == 1.0 and not self.whisper

    def to_dict(self) -> dict:
        return {"pitch_semitones": self.pitch_semitones, "formant_ratio": self.formant_ratio, "whisper": self.whisper}


def shift_pitch(features: WorldFeatures, semitones: float) -> WorldFeatures:
    """Multiply every voiced F0 by 2^(semitones / 12); unvoiced frames stay unvoiced."""
    if semitones == 0:
        return features
    return features.with_tracks(f0=features.f0 * (2.0 ** (semitones / 12.0)))


def warp_frequency_axis(envelope: np.ndarray, ratio: float) -> np.ndarray:
    """Stretch [T, F] envelopes along frequency: out[:, k] = envelope[:, k / ratio] (linear interpolation).

    ratio > 1 moves features up, < 1 down; bins read beyond Nyquist take the last bin's value.
    """
    if ratio == 1.0:
        return envelope
    bins = envelope.shape[1]
    source = np.arange(bins) / ratio
    lo = np.clip(np.floor(source).astype(np.int64), 0, bins - 1)
    hi = np.clip(lo + 1, 0, bins - 1)
    frac = np.clip(source - lo, 0.0, 1.0)
    return envelope[:, lo] * (1.0 - frac) + envelope[:, hi] * frac


def shift_formants(features: WorldFeatures, ratio: float) -> WorldFeatures:
    """Move the spectral envelope (formants) by ``ratio`` along frequency, interpolating log power.

    The warped envelope is rescaled per frame to the original frame energy so loudness is kept.
    """
    if ratio == 1.0:
        return features
    sp = features.sp
    warped = np.exp(warp_frequency_axis(np.log(np.maximum(sp, 1e-16)), ratio))
    gain = sp.sum(axis=1, keepdims=True) / np.maximum(warped.sum(axis=1, keepdims=True), 1e-30)
    return features.with_tracks(sp=warped * gain)


def whisper(features: WorldFeatures) -> WorldFeatures:
    """Unvoiced rendering: F0 = 0 and aperiodicity 1 everywhere, low frequencies turned down.

    Each frame keeps its energy (the tilt is compensated), so a whisper is as loud as the speech it
    came from; WORLD then excites the envelope with noise instead of glottal pulses.
    """
    f = features
    freqs = np.linspace(0.0, f.sample_rate / 2.0, f.sp.shape[1])
    tilt_db = -WHISPER_TILT_DB * np.clip(1.0 - freqs / WHISPER_TILT_HZ, 0.0, 1.0)
    tilted = f.sp * (10.0 ** (tilt_db / 10.0))[None, :]
    gain = f.sp.sum(axis=1, keepdims=True) / np.maximum(tilted.sum(axis=1, keepdims=True), 1e-30)
    return f.with_tracks(f0=np.zeros_like(f.f0), sp=tilted * gain, ap=np.ones_like(f.ap))


def apply_transform(features: WorldFeatures, transform: VoiceTransform) -> WorldFeatures:
    """Formants, then pitch, then whisper (which drops the pitch it would not use)."""
    out = shift_formants(features, transform.formant_ratio)
    out = shift_pitch(out, transform.pitch_semitones)
    if transform.whisper:
        out = whisper(out)
    return out
