"""The feature profile: one frozen description of how mel features are made.

Every checkpoint stores its profile; every mel that meets a model is checked against it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FeatureProfile:
    """How a log-mel spectrogram is computed from audio.

    sample_rate: Hz. n_fft, hop_length, win_length: samples. n_mels: bands. fmin, fmax: Hz.
    power: 1 for a magnitude, 2 for a power spectrogram. mel_scale: "slaney" or "htk";
    mel_norm: "slaney" (area normalised filters) or None. log: "ln" (natural log of the clamped mel,
    as WaveGlow and HiFi-GAN) or "db" (20·log10 minus ref_level_db, then normalised to [0, 1] with
    min_level_db, as WaveRNN implementations). center: pad so frame t is centred on sample t·hop.
    A mel for ``T`` samples always has ``T // hop_length`` frames (see ``MelFrontEnd``).
    """

    name: str
    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    fmin: float
    fmax: float
    power: float = 1.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    log: str = "ln"
    clamp_min: float = 1e-5
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    center: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown feature profile fields: {sorted(unknown)}")
        return cls(**d)
