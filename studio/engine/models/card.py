"""``ModelCard``: what a checkpoint says about its model, readable without importing torch.

``studio.engine.models.base`` re-exports it; the model catalogue reads cards from this module alone so
that ``studio models`` and the window's model list do not pay for importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from studio.engine.audio.features import FeatureProfile


@dataclass
class ModelCard:
    """Everything a person needs to know about a model; stored as the checkpoint's JSON.

    ``config`` is the family config as a dict, ``profile`` the mel feature profile (also for
    unconditional models: it fixes the sample rate and what the views show). ``training`` holds
    steps, wall time, hardware, data; ``metrics`` evaluation results; ``provenance`` where it came from.
    """

    family: str
    name: str
    config: dict[str, Any]
    profile: FeatureProfile
    sample_rate: int
    receptive_field: int
    parameters: int
    conditioning: str  # "mel" or "none"
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["profile"] = self.profile.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model card fields: {sorted(unknown)}")
        d = dict(d)
        d["profile"] = FeatureProfile.from_dict(d["profile"])
        return cls(**d)
