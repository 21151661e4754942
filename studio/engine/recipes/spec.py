"""The shape of a recipe: one frozen dataclass per bundled model, with a schedule per kind of device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASETS = ("festvox-ru", "music")


@dataclass(frozen=True)
class DeviceSchedule:
    """How a recipe trains on one kind of device.

    batch: segments per step. segment_hops: segment length in hops of the profile. steps: steps one
    run adds (a later run continues from where the last one stopped). lr: peak rate; lr_schedule and
    lr_final as in ``TrainOptions``; warmup_steps: linear ramp at the start of every run (a warm start
    has a fresh optimizer). amp: "bf16" autocast (CUDA) or None. checkpoint_every: steps between saves.
    """

    batch: int
    segment_hops: int
    steps: int
    lr: float
    lr_schedule: str = "cosine"
    lr_final: float = 0.1
    warmup_steps: int = 20
    amp: str | None = None
    checkpoint_every: int = 100


@dataclass(frozen=True)
class Recipe:
    """One bundled model.

    name: the checkpoint's name (``resources/models/NAME.safetensors``). family, profile, config: the
    network (config fields of the family; fields that follow the profile are fitted to it).
    dataset: "festvox-ru" (speech, ``datasets.festvox``) or "music" (``datasets.music``), with
    ``prepare`` keyword arguments for its preparation. cpu / cuda: the schedules. vocoder: scored by
    copy synthesis against Griffin-Lim (else: an unconditional model, scored on free generation).
    description: one line for the model card.
    """

    name: str
    family: str
    profile: str
    config: dict[str, Any]
    dataset: str
    cpu: DeviceSchedule
    cuda: DeviceSchedule
    description: str
    prepare: dict[str, Any] = field(default_factory=dict)
    vocoder: bool = True
    eval_utterances: int = 2
    sample_seconds: float = 4.0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"recipe {self.name}: dataset must be one of {DATASETS}, got {self.dataset!r}")

    def schedule(self, device: str) -> DeviceSchedule:
        """The schedule for ``device`` ("cpu", "cuda", "cuda:N")."""
        return self.cuda if str(device).startswith("cuda") else self.cpu
