"""What a training run is asked to do (``TrainOptions``) and the per-family defaults it starts from.

The defaults are deliberately small, so that a laptop CPU trains a model that makes recognisable
sound in minutes; ``--config`` overrides any family config field. Fields that must agree with the
feature profile (mel bands, the upsampling that spans one hop) are fitted to the chosen profile
unless the user set them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine.audio.features import FeatureProfile

LR_SCHEDULES = ("constant", "cosine", "exponential")
AMP_MODES = (None, "bf16")


@dataclass(frozen=True)
class FamilyRecipe:
    """Training defaults of one family. segment_hops: segment length in hops of the profile."""

    profile: str
    config: dict[str, Any]
    batch: int
    segment_hops: int
    lr: float


FAMILY_RECIPES: dict[str, FamilyRecipe] = {
    "wavenet": FamilyRecipe(
        profile="speech16k",
        config={
            "layers": 10,
            "dilation_cycle": 10,
            "residual_channels": 32,
            "gate_channels": 64,
            "skip_channels": 64,
            "cond_channels": 32,
        },
        batch=4,
        segment_hops=16,
        lr=1e-3,
    ),
    "wavernn": FamilyRecipe(
        profile="wavernn",
        config={"rnn_dims": 64, "fc_dims": 64, "res_blocks": 2, "compute_dims": 32, "res_out_dims": 32},
        batch=8,
        segment_hops=8,
        lr=1e-3,
    ),
    "waveglow": FamilyRecipe(
        profile="waveglow",
        config={"n_flows": 4, "n_group": 8, "n_early_every": 2, "n_early_size": 2, "wn_layers": 4, "wn_channels": 32},
        batch=4,
        segment_hops=16,
        lr=3e-4,
    ),
}
GENERIC_RECIPE = FamilyRecipe(profile="speech16k", config={}, batch=4, segment_hops=16, lr=1e-3)


def recipe_for(family: str) -> FamilyRecipe:
    return FAMILY_RECIPES.get(family, GENERIC_RECIPE)


@dataclass
class TrainOptions:
    """A training run. Sizes are in samples, ``steps`` is the total step count to reach (a resumed run
    continues from its checkpoint's step up to it). ``None`` means the family's default.

    data: folders, files or globs of audio. out: checkpoint path stem (``folder/NAME``).
    config: family config overrides. profile: a feature preset name (``features.PRESETS``).
    lr_schedule: "constant", "cosine" (to ``lr * lr_final``) or "exponential" (reaching
    ``lr * lr_final`` at the last step); ``warmup_steps`` ramps linearly first.
    heldout: glob of held-out files (else a hash split, ``heldout_fraction``).
    eval_every: steps between held-out evaluations (default: ``checkpoint_every``).
    sample_seconds: length of ``NAME.sample.wav`` written at each checkpoint (0 = none).
    init_from: a checkpoint (e.g. a bundled fp16 model) whose weights and config start a new run; the
    step count goes on from its card's ``training.steps``, the optimizer starts afresh.
    amp: "bf16" runs forward and loss under bfloat16 autocast (CUDA only; weights and Adam stay float32).
    fit_seconds: end the schedule within this much wall time from the start of the call (``time_fit``:
    the last step moves to where the measured rate meets it, never past ``steps``; single process only).
    A single ``data`` entry that is a prepared set (``manifest.json``) trains on its ``train`` split
    and evaluates on its ``validation`` split (the fixed held-out items are never trained on).
    """

    family: str
    data: list[str]
    out: str
    config: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    steps: int = 1000
    batch: int | None = None
    segment: int | None = None
    lr: float | None = None
    lr_schedule: str = "constant"
    lr_final: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    eval_every: int | None = None
    log_every: int = 10
    heldout: str | None = None
    heldout_fraction: float = 0.05
    heldout_segments: int = 8
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    sample_seconds: float = 1.0
    init_from: str | None = None
    amp: str | None = None
    fit_seconds: float | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first option out of range."""
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        for name in ("batch", "segment"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"lr_final must be in (0, 1], got {self.lr_final}")
        if self.fit_seconds is not None and not (self.fit_seconds > 0 and math.isfinite(self.fit_seconds)):
            raise ValueError(f"fit_seconds must be a positive number of seconds, got {self.fit_seconds}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint-every must be at least 1, got {self.checkpoint_every}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad clip must be positive, got {self.grad_clip}")
        if not self.data:
            raise ValueError("no training data given")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(str(m) for m in AMP_MODES)}, got '{self.amp}'")
        if self.resume and self.init_from:
            raise ValueError("give --resume or --init-from, not both")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_config(text: str | None) -> dict[str, Any]:
    """``--config``: inline JSON (``'{"layers": 8}'``) or the path of a JSON file; an object of fields."""
    if not text:
        return {}
    source = "inline JSON"
    if not text.lstrip().startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"--config {text}: neither inline JSON nor an existing JSON file")
        source = str(path)
        text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config ({source}) is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--config ({source}) must be a JSON object of config fields")
    return value


def _hop_factors(hop: int, largest: int = 8) -> tuple[int, ...]:
    """Split ``hop`` into factors no larger than ``largest`` where possible, largest first (256 → 8,8,4)."""
    factors: list[int] = []
    rest = hop
    while rest > 1:
        step = next((d for d in range(min(largest, rest), 1, -1) if rest % d == 0), rest)
        factors.append(step)
        rest //= step
    return tuple(factors) or (1,)


def fit_config_to_profile(family_fields: set[str], config: dict[str, Any], user_keys: set[str], profile: FeatureProfile) -> dict[str, Any]:
    """Adjust the fields that must agree with ``profile``, leaving those the user set alone.

    n_mels (when the model is conditioned), upsample_scales (product = hop), upsample_window (4 hops),
    hop_length.
    """
    out = dict(config)
    if "n_mels" in family_fields and "n_mels" not in user_keys and out.get("n_mels", 1):
        out["n_mels"] = profile.n_mels
    if "upsample_scales" in family_fields and "upsample_scales" not in user_keys:
        out["upsample_scales"] = list(_hop_factors(profile.hop_length))
    if "upsample_window" in family_fields and "upsample_window" not in user_keys:
        out["upsample_window"] = 4 * profile.hop_length
    if "hop_length" in family_fields and "hop_length" not in user_keys:
        out["hop_length"] = profile.hop_length
    return out


def default_out_stem(out: str) -> Path:
    """``--out``: a bare name goes to the user models folder; a path is used as the stem."""
    from studio.engine.checkpoints import CheckpointPaths

    if os.sep in out or "/" in out or out.startswith("~"):
        return CheckpointPaths.of(out).stem
    from studio.engine.catalog import user_models_dir

    return CheckpointPaths.of(user_models_dir() / out).stem


def supports_free_generation(family: str) -> bool:
    """Whether ``family`` can be trained without mel conditioning (its config accepts ``n_mels=0``)."""
    from studio.engine.models.base import get_family

    try:
        get_family(family).config_class(n_mels=0)
    except (TypeError, ValueError):
        return False
    return True


def supports_speakers(family: str) -> bool:
    """Whether ``family``'s config has a speaker embedding (``n_speakers``)."""
    from studio.engine.models.base import get_family

    return "n_speakers" in {f.name for f in dataclasses.fields(get_family(family).config_class)}


def free_generation_config(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` overrides for an unconditional model (``n_mels=0``); ValueError saying why not."""
    if not supports_free_generation(family):
        raise ValueError(f"{family} always needs mel conditioning (it is a vocoder): it cannot learn free generation")
    if config.get("n_mels", 0):
        raise ValueError(f"free generation contradicts the config's n_mels={config['n_mels']}: give one or the other")
    return {**config, "n_mels": 0}


def multi_speaker_config(family: str, config: dict[str, Any], folder: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """(``config`` with ``n_speakers`` = the number of speaker sub-folders of ``folder``, their names).

    The convention of ``train.data.speaker_folders``: one sub-folder of audio per speaker, sorted names
    are the ids. ValueError when the family has no speaker embedding, the folder has fewer than two
    speaker sub-folders, audio lies outside them, or the config says otherwise."""
    from studio.engine.train.data import DatasetError, collect_audio_files, speaker_folders

    if not supports_speakers(family):
        raise ValueError(f"{family} has no speaker embedding: train one model per speaker instead")
    try:
        files = collect_audio_files([folder])
        names, _ = speaker_folders([folder], files)
    except DatasetError as exc:
        raise ValueError(str(exc)) from None
    if len(names) < 2:
        raise ValueError(f"{folder}: found {len(names)} speaker sub-folder(s); a multi-speaker model needs one sub-folder per speaker, at least two")
    given = config.get("n_speakers")
    if given and given < len(names):
        raise ValueError(f"the config's n_speakers={given} is fewer than the {len(names)} speaker folders ({', '.join(names)})")
    return {**config, "n_speakers": given or len(names)}, names
