"""The training loop behind ``studio train`` and the studio's training worker.

``train(options, progress=None, cancel=None) -> TrainResult`` runs on the calling thread (a worker
thread in the studio) until ``options.steps`` is reached, the cancel token is set (a checkpoint of the
current step is written first), or the loss turns NaN/Inf (``TrainingDiverged``; the last good
checkpoint stays as it was).

Per step: a batch of random segments (``[B, segment]`` float32, the segment a multiple of the hop),
their mel from the shared ``MelFrontEnd`` on the training device (conditioned families only),
``model.training_loss``, backward, gradient clipping, Adam with an optional warm-up and cosine or
exponential decay. Randomness is re-seeded every step from (seed, rank, step), so a resumed run draws
exactly the batches an uninterrupted one would have, and every distributed rank draws its own.

Multi-speaker models (config ``n_speakers > 0``) train on one folder with one sub-folder per speaker
(``data.speaker_folders``): each segment's speaker id goes to ``training_loss(audio, mel, speaker=...)``
and the card's ``training["speakers"]`` lists the names by id (``studio generate --speaker``).

Files (rank 0 only), next to the ``--out`` stem: ``NAME.safetensors``/``.json``/``.train.safetensors``
(every ``checkpoint_every`` steps and at the end, atomically), ``NAME.log.jsonl`` (one JSON object per
logged step and per evaluation), ``NAME.sample.wav`` (~1 s made by the model at each checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from studio.engine.checkpoints import (
    CheckpointError,
    CheckpointPaths,
    TrainingState,
    load_for_resume,
    save_checkpoint,
)
from studio.engine.models.base import CancelToken, GenerateRequest, WaveformModel, build_model, get_family
from studio.engine.train.data import (
    AudioCorpus,
    DatasetError,
    SegmentSampler,
    collect_audio_files,
    describe_data,
    heldout_segments,
    heldout_speakers,
    prepared_set_splits,
    speaker_folders,
    split_files,
)
from studio.engine.train.distributed import Context
from studio.engine.train.options import TrainOptions, default_out_stem, fit_config_to_profile, recipe_for
from studio.engine.train.time_fit import ScheduleFit

log = logging.getLogger(__name__)

LOG_SUFFIX = ".log.jsonl"
FIT_RESERVE_S = 3.0
"""Seconds kept free before a fitted run's deadline for its last checkpoint (besides its last evaluation)."""
SAMPLE_SUFFIX = ".sample.wav"


class TrainingError(Exception):
    """A run that cannot start or go on (bad options, unusable data, nothing to resume); one clear line."""


class TrainingDiverged(TrainingError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint was kept."""


@dataclass(frozen=True)
class TrainProgress:
    """One report to the progress callback (after every step, and after evaluations and checkpoints).

    event: "start", "step", "eval", "checkpoint" or "done". loss: mean training loss over ranks of this
    step. heldout_loss: the latest held-out loss (None before the first evaluation).
    """

    event: str
    step: int
    total_steps: int
    loss: float | None
    heldout_loss: float | None
    steps_per_s: float
    elapsed_s: float
    lr: float


ProgressFn = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """What a run ended with. status: "completed" or "cancelled"."""

    status: str
    step: int
    checkpoint: Path
    loss: float | None
    heldout_loss: float | None
    initial_heldout_loss: float | None
    wall_s: float
    log_path: Path
    sample_path: Path | None
    replica_digests: list[str] = field(default_factory=list)


# -- small pure helpers ------------------------------------------------------------------------------
def lr_at(options: TrainOptions, base_lr: float, step: int) -> float:
    """Learning rate for (1-based) ``step``: linear warm-up, then the schedule's decay to ``lr_final``."""
    if options.warmup_steps and step <= options.warmup_steps:
        return base_lr * step / options.warmup_steps
    span = max(options.steps - options.warmup_steps, 1)
    t = min(max(step - options.warmup_steps, 0) / span, 1.0)
    if options.lr_schedule == "cosine":
        return base_lr * (options.lr_final + (1 - options.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))
    if options.lr_schedule == "exponential":
        return base_lr * options.lr_final**t
    return base_lr


def step_seed(seed: int, rank: int, step: int) -> int:
    """A well-mixed 63-bit seed for one rank's one step."""
    digest = hashlib.sha256(f"{seed}:{rank}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (hex, 16 chars) of every parameter and buffer, in state-dict order."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} threads)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} threads)"


class _LossModule(nn.Module):
    """Wraps a model so that ``forward`` is its training loss: DDP synchronises gradients of forward only."""

    def __init__(self, model: WaveformModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, mel: torch.Tensor | None, speaker: torch.Tensor | None = None) -> torch.Tensor:
        return _loss(self.model, audio, mel, speaker)


def _loss(model: WaveformModel, audio: torch.Tensor, mel: torch.Tensor | None, speaker: torch.Tensor | None) -> torch.Tensor:
    """The model's training loss; ``speaker`` (int64 [B]) is passed only to multi-speaker models."""
    if speaker is None:
        return model.training_loss(audio, mel)
    return model.training_loss(audio, mel, speaker=speaker)


def _n_speakers(model: WaveformModel) -> int:
    return int(getattr(model.config, "n_speakers", 0) or 0)


# -- setting up ---------------------------------------------------------------------------------------
def _profile_named(name: str):
    from studio.engine.audio.features import PRESETS

    try:
        return PRESETS[name]
    except KeyError:
        raise TrainingError(f"unknown feature profile '{name}'; known: {', '.join(sorted(PRESETS))}") from None


def _new_model(options: TrainOptions, name: str) -> WaveformModel:
    import dataclasses

    try:
        family = get_family(options.family)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    recipe = recipe_for(options.family)
    profile = _profile_named(options.profile or recipe.profile)
    fields = {f.name for f in dataclasses.fields(family.config_class)}
    config = fit_config_to_profile(fields, {**recipe.config, **options.config}, set(options.config), profile)
    config = {k: v for k, v in config.items() if k in fields or k in options.config}
    try:
        model = build_model(options.family, config, profile)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{options.family} config: {exc}") from None
    model.name = name
    return model


def _resume_model(options: TrainOptions, paths: CheckpointPaths) -> tuple[WaveformModel, TrainingState]:
    try:
        model, state = load_for_resume(paths.stem, family=options.family)
    except CheckpointError as exc:
        raise TrainingError(f"cannot resume: {exc}") from None
    if options.profile and options.profile != model.profile.name:
        raise TrainingError(
            f"cannot resume with --profile {options.profile}: {paths.stem.name} was trained with '{model.profile.name}'"
        )
    return model, state


def _initial_model(options: TrainOptions, name: str) -> tuple[WaveformModel, dict[str, Any]]:
    """The model of ``options.init_from`` (weights and config, with ``options.config``'s changes to the
    family's ``warm_start_fields``) renamed ``name``, and its card's training record."""
    from studio.engine.checkpoints import load_model

    try:
        model = load_model(options.init_from, family=options.family)
    except CheckpointError as exc:
        raise TrainingError(f"cannot start from {options.init_from}: {exc}") from None
    try:
        model = model.reconfigured(dict(options.config or {}))
    except ValueError as exc:
        raise TrainingError(f"--config cannot change the network of a model started from a checkpoint: {exc}") from None
    if options.profile and options.profile != model.profile.name:
        raise TrainingError(
            f"cannot start from {options.init_from} with --profile {options.profile}: it uses '{model.profile.name}'"
        )
    record = dict(model.extra_card.get("training", {}))
    model.name = name
    return model, record


def _load_data(
    options: TrainOptions, sample_rate: int, min_heldout: int, n_speakers: int = 0
) -> tuple[AudioCorpus, AudioCorpus, list[str] | None]:
    """(train corpus, held-out corpus, speaker names by id or None for single-speaker models)."""
    speakers: list[str] | None = None
    speaker_of: dict[Path, int] | None = None
    try:
        prepared = None if n_speakers else prepared_set_splits(options.data)
        if prepared is not None:
            train_files, heldout_files = prepared
        else:
            files = collect_audio_files(options.data)
            if n_speakers:
                speakers, speaker_of = speaker_folders(options.data, files)
                if len(speakers) > n_speakers:
                    raise DatasetError(
                        f"{len(speakers)} speaker folders ({', '.join(speakers)}) but the model has n_speakers={n_speakers}"
                    )
            train_files, heldout_files = split_files(files, options.heldout_fraction, options.heldout)
        train = AudioCorpus.load(train_files, sample_rate, speaker_of)
        if heldout_files:
            heldout = AudioCorpus.load(heldout_files, sample_rate, speaker_of)
        else:
            heldout = train.split_tail(minimum=min_heldout)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from None
    if not train.clips:
        raise TrainingError("every training file was unreadable (see the warnings above)")
    if not heldout.clips:
        raise TrainingError("every held-out file was unreadable (see the warnings above)")
    return train, heldout, speakers


# -- the run ------------------------------------------------------------------------------------------
class _Run:
    """State of one call to ``train`` (kept together so the step, eval and save code stay short)."""

    def __init__(self, options: TrainOptions, progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        self.options = options
        self.progress = progress
        self.cancel = cancel
        self.ctx = Context.from_env()
        self.device = self.ctx.device(options.device)
        self.paths = CheckpointPaths.of(default_out_stem(options.out))
        self.log_path = self.paths.stem.with_name(self.paths.stem.name + LOG_SUFFIX)
        self.sample_path = self.paths.stem.with_name(self.paths.stem.name + SAMPLE_SUFFIX)
        self.started = time.perf_counter()
        self.wall_before = 0.0
        self.last_loss: float | None = None
        self.heldout_loss: float | None = None
        self.initial_heldout_loss: float | None = None
        self.last_saved_step: int | None = None
        self.data_fingerprint = 0.0
        self.steps_per_s = 0.0
        self.schedule_start = 0
        self.started_from: str | None = None
        self.fitted = False  # whether fit_seconds has moved the last step yet

    # setup -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        o = self.options
        self.ctx.start(self.device)
        torch.manual_seed(o.seed)
        if self.device.type == "cuda":  # fixed shapes every step: let cuDNN pick its fastest kernels, TF32 matmuls
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        state: TrainingState | None = None
        initial: dict[str, Any] | None = None
        if o.amp and self.device.type != "cuda":
            raise TrainingError(f"--amp {o.amp} needs a CUDA device (this run is on {self.device})")
        if o.resume:
            self.model, state = _resume_model(o, self.paths)
            self.model.train()
        else:
            if self.paths.json.exists() or self.paths.weights.exists():
                raise TrainingError(
                    f"{self.paths.stem} already exists: add --resume to continue it, or choose another --out"
                )
            if o.init_from:
                self.model, initial = _initial_model(o, self.paths.stem.name)
            else:
                self.model = _new_model(o, self.paths.stem.name)
        self.model.to(self.device).train()
        profile = self.model.profile
        hop = profile.hop_length
        recipe = recipe_for(self.model.family)
        segment = o.segment or recipe.segment_hops * hop
        self.segment = max(hop, segment // hop * hop)
        self.batch = o.batch or recipe.batch
        self.base_lr = o.lr or recipe.lr
        n_speakers = _n_speakers(self.model)
        self.train_data, self.heldout_data, self.speakers = _load_data(o, profile.sample_rate, self.segment, n_speakers)
        known = (initial or {}).get("speakers") or self.model.extra_card.get("training", {}).get("speakers")
        if n_speakers and known and known != self.speakers:
            raise TrainingError(f"the data's speaker folders {self.speakers} differ from the model's speakers {known}")
        self.sampler = SegmentSampler(self.train_data, self.segment, self.batch)
        self.front_end = None
        if self.model.conditioned:
            from studio.engine.audio.features import MelFrontEnd

            self.front_end = MelFrontEnd(profile).to(self.device)
        self.heldout = heldout_segments(self.heldout_data, self.segment, o.heldout_segments).to(self.device)
        self.heldout_mel = self._mel(self.heldout)
        self.heldout_speaker = None
        if n_speakers:
            self.heldout_speaker = heldout_speakers(self.heldout_data, self.segment, o.heldout_segments).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.base_lr)
        self.step = 0
        if state is not None:
            self.optimizer.load_state_dict(state.optimizer)
            self.step = state.step
            self.wall_before = float(state.extra.get("wall_s", 0.0))
            self.initial_heldout_loss = state.extra.get("initial_heldout_loss")
            self.last_saved_step = state.step
            self.schedule_start = int(state.extra.get("schedule_start", 0))
            self.started_from = state.extra.get("started_from")
        elif initial is not None:  # a warm start: the step count and wall time go on, the schedule restarts
            self.step = self.schedule_start = int(initial.get("steps", 0) or 0)
            self.wall_before = float(initial.get("wall_s", 0.0) or 0.0)
            self.initial_heldout_loss = initial.get("initial_heldout_loss")
            self.started_from = str(o.init_from)
        self.trainer: nn.Module = _LossModule(self.model)
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = self._has_unused_parameters()
            self.trainer = DistributedDataParallel(self.trainer, device_ids=ids, find_unused_parameters=unused)
        self.generator = torch.Generator()
        if self.ctx.is_main:
            self.paths.stem.parent.mkdir(parents=True, exist_ok=True)
            if not o.resume:
                self.log_path.write_text("")
            elif self.log_path.exists() and not self.log_path.read_bytes().endswith(b"\n"):
                with open(self.log_path, "a", encoding="utf-8") as f:  # a killed run's half line stays alone
                    f.write("\n")
        self.data_description = describe_data(o.data, self.train_data, self.heldout_data)

    def _has_unused_parameters(self) -> bool:
        """Whether some parameters get no gradient from the loss (DDP must then look for them each step)."""
        audio = self.heldout[: min(2, self.heldout.shape[0])]
        mel = None if self.heldout_mel is None else self.heldout_mel[: audio.shape[0]]
        _loss(self.model, audio, mel, self._heldout_speaker(0, audio.shape[0])).backward()
        unused = any(p.requires_grad and p.grad is None for p in self.model.parameters())
        self.model.zero_grad(set_to_none=True)
        return unused

    def _heldout_speaker(self, start: int, stop: int) -> torch.Tensor | None:
        return None if self.heldout_speaker is None else self.heldout_speaker[start:stop]

    def _mel(self, audio: torch.Tensor) -> torch.Tensor | None:
        if self.front_end is None:
            return None
        with torch.no_grad():
            return self.front_end(audio)

    # reporting ------------------------------------------------------------------------------------
    @property
    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _report(self, event: str) -> None:
        if self.progress is not None and self.ctx.is_main:
            self.progress(
                TrainProgress(
                    event=event,
                    step=self.step,
                    total_steps=self.options.steps,
                    loss=self.last_loss,
                    heldout_loss=self.heldout_loss,
                    steps_per_s=self.steps_per_s,
                    elapsed_s=self.wall_s,
                    lr=self.optimizer.param_groups[0]["lr"],
                )
            )

    # the work ---------------------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Mean training loss over the fixed held-out segments (rank 0's replica; no gradients)."""
        self.model.eval()
        total, count = 0.0, 0
        try:
            with torch.no_grad():
                for i in range(0, self.heldout.shape[0], self.batch):
                    audio = self.heldout[i : i + self.batch]
                    mel = None if self.heldout_mel is None else self.heldout_mel[i : i + self.batch]
                    speaker = self._heldout_speaker(i, i + self.batch)
                    total += float(_loss(self.model, audio, mel, speaker)) * audio.shape[0]
                    count += audio.shape[0]
        finally:
            self.model.train()  # also when the loss raises: dropout stays on for the rest of the run
        self.heldout_loss = total / count
        if self.initial_heldout_loss is None:
            self.initial_heldout_loss = self.heldout_loss
        self._write_log({"event": "eval", "step": self.step, "heldout_loss": self.heldout_loss, "wall_s": self.wall_s})
        self._report("eval")
        return self.heldout_loss

    def train_step(self) -> tuple[float, bool]:
        """One optimisation step; returns (mean loss over ranks, False), or (NaN, True) without stepping
        when any rank was asked to cancel."""
        step = self.step + 1
        seed = step_seed(self.options.seed, self.ctx.rank, step)
        self.generator.manual_seed(seed)
        torch.manual_seed(seed)
        audio, speaker = self.sampler.sample_with_speakers(self.generator)
        self.data_fingerprint += float(audio.double().sum())
        audio = audio.to(self.device, non_blocking=True)
        mel = self._mel(audio)
        speaker = speaker.to(self.device) if self.speakers is not None else None
        with self._autocast():
            loss = self.trainer(audio, mel, speaker)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        loss_value = float(loss.detach())
        bad = not (math.isfinite(loss_value) and math.isfinite(float(grad_norm)))
        cancelled = self.cancel is not None and self.cancel.cancelled
        flags = torch.tensor([0.0 if bad else loss_value, float(bad), float(cancelled)], dtype=torch.float64)
        loss_sum, bad_ranks, cancelling_ranks = self.ctx.all_sum(flags.to(self.device)).tolist()
        if bad_ranks > 0:
            raise TrainingDiverged(self._diverged_message(step, "the loss or its gradients became NaN/Inf"))
        if cancelling_ranks > 0:  # stop before this step changes anything: the checkpoint is the last step
            return math.nan, True
        lr = self.lr_for(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step = step
        return loss_sum / self.ctx.world_size, False

    def _autocast(self):
        if self.options.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def lr_for(self, step: int) -> float:
        """The schedule's rate at ``step``; a run warm-started at step S runs its schedule over S+1..steps."""
        if not self.schedule_start:
            return lr_at(self.options, self.base_lr, step)
        span = dataclasses.replace(self.options, steps=max(self.options.steps - self.schedule_start, 1))
        return lr_at(span, self.base_lr, step - self.schedule_start)

    def _schedule_fit(self, eval_seconds: float) -> ScheduleFit | None:
        """The fit of this run's last step to ``options.fit_seconds`` (None without one): the deadline
        leaves room for the final evaluation (as long as the first, plus a margin) and checkpoint."""
        o = self.options
        if not o.fit_seconds:
            return None
        if self.ctx.distributed:  # each rank would fit on its own clock and stop at another step
            log.warning("fit_seconds is ignored in a distributed run: it trains to step %d", o.steps)
            return None
        reserve = 1.5 * eval_seconds + FIT_RESERVE_S
        return ScheduleFit(deadline=self.started + o.fit_seconds - reserve, cap=o.steps)

    def _refit(self, fit: ScheduleFit, now: float) -> None:
        """Move the run's last step (and so its schedule) to where the measured rate meets the deadline
        (logged as a "fit" event the first time it moves)."""
        if fit.begin_time is None:
            fit.begin(now, self.step)
            return
        steps = fit.fitted_steps(now, self.step, self.options.steps)
        if steps != self.options.steps:
            if not self.fitted:
                self._write_log({"event": "fit", "step": self.step, "steps": steps, "wall_s": self.wall_s})
                self.fitted = True
            self.options = dataclasses.replace(self.options, steps=steps)

    def _diverged_message(self, step: int, what: str) -> str:
        kept = (
            f"the last good checkpoint ({self.paths.stem}, step {self.last_saved_step}) is kept"
            if self.last_saved_step is not None
            else "no checkpoint was written"
        )
        return f"training stopped at step {step}: {what}; {kept}. Lower --lr (now {self.base_lr:g}) or --grad-clip and resume"

    def save(self) -> None:
        """Checkpoint the current step (rank 0), after checking the weights are finite."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingDiverged(self._diverged_message(self.step, "the weights became NaN/Inf"))
        if not self._probe_is_finite():
            raise TrainingDiverged(self._diverged_message(self.step, "the weights blew up (held-out loss is NaN/Inf)"))
        if self.ctx.is_main:
            o = self.options
            self.model.extra_card["training"] = self._card_training()
            self.model.extra_card["metrics"] = {
                k: v for k, v in {"train_loss": self.last_loss, "heldout_loss": self.heldout_loss}.items() if v is not None
            }
            samples_per_epoch = max(self.train_data.total_samples, 1)
            seen = self.step * self.batch * self.segment * self.ctx.world_size
            state = TrainingState(
                step=self.step,
                epoch=int(seen // samples_per_epoch),
                optimizer=self.optimizer.state_dict(),
                rng={"torch_cpu": torch.get_rng_state()},
                extra={
                    "seed": o.seed,
                    "wall_s": self.wall_s,
                    "initial_heldout_loss": self.initial_heldout_loss,
                    "schedule_start": self.schedule_start,
                    "started_from": self.started_from,
                    "options": {k: v for k, v in o.to_dict().items() if k not in ("resume",)},
                },
            )
            save_checkpoint(self.model, self.paths.stem, state)
            self._write_log({"event": "checkpoint", "step": self.step, "path": str(self.paths.stem), "wall_s": self.wall_s})
            self.write_sample()
        self.last_saved_step = self.step
        self._report("checkpoint")
        self.ctx.barrier()

    def _probe_is_finite(self) -> bool:
        """Whether the model still gives a finite loss on one held-out batch (huge but finite weights don't)."""
        mel = None if self.heldout_mel is None else self.heldout_mel[: self.batch]
        self.model.eval()
        try:
            with torch.no_grad():
                loss = _loss(self.model, self.heldout[: self.batch], mel, self._heldout_speaker(0, self.batch))
                return math.isfinite(float(loss))
        finally:
            self.model.train()

    def _card_training(self) -> dict[str, Any]:
        return {
            "steps": self.step,
            "wall_s": round(self.wall_s, 2),
            "hardware": hardware_description(self.device),
            "world_size": self.ctx.world_size,
            "torch": torch.__version__,
            "batch": self.batch,
            "segment": self.segment,
            "lr": self.base_lr,
            "lr_schedule": self.options.lr_schedule,
            "amp": self.options.amp,
            "started_from": self.started_from,
            "seed": self.options.seed,
            "data": self.data_description,
            **({"speakers": list(self.speakers)} if self.speakers is not None else {}),
            "final_loss": self.last_loss,
            "heldout_loss": self.heldout_loss,
            "initial_heldout_loss": self.initial_heldout_loss,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write_sample(self) -> None:
        """~``sample_seconds`` of the model's own output: a vocoded held-out clip, or free generation."""
        seconds = self.options.sample_seconds
        if seconds <= 0:
            return
        from studio.engine.audio.files import save

        sr = self.model.sample_rate
        n = max(int(seconds * sr) // self.model.profile.hop_length, 1) * self.model.profile.hop_length
        request = GenerateRequest(num_samples=n, seed=self.options.seed, device=str(self.device))
        if self.front_end is not None:
            clip = torch.from_numpy(self.heldout_data.segment(0, 0, n)).to(self.device)
            request.mel = self._mel(clip.unsqueeze(0))[0].cpu().numpy()
        try:
            audio = self.model.generate(request)
        finally:
            self.model.train()
        if audio.size and np.all(np.isfinite(audio)):
            save(self.sample_path, audio, sr)

    def finish(self) -> list[str]:
        """Check that every rank holds the same weights; returns their digests (rank order)."""
        digest = weights_digest(self.model)
        raw = torch.tensor(list(bytes.fromhex(digest)) + [0], dtype=torch.float64)
        raw[-1] = self.data_fingerprint
        gathered = self.ctx.all_gather(raw.to(self.device) if self.device.type == "cuda" else raw).cpu()
        digests = [bytes(int(v) for v in row[:-1].tolist()).hex() for row in gathered]
        fingerprints = [float(row[-1]) for row in gathered]
        record = {"event": "replicas", "step": self.step, "digests": digests, "data_fingerprints": fingerprints}
        self._write_log(record)
        if len(set(digests)) > 1:
            raise TrainingError(f"distributed replicas ended with different weights: {digests}")
        return digests

    def run(self) -> TrainResult:
        o = self.options
        if self.step >= o.steps:
            raise TrainingError(f"{self.paths.stem.name} is already at step {self.step} ≥ --steps {o.steps}; raise --steps to go on")
        self._report("start")
        self._write_log({"event": "start", "step": self.step, "digest": weights_digest(self.model), "resumed": o.resume})
        eval_started = time.perf_counter()
        if self.ctx.is_main:
            self.evaluate()
        fit = self._schedule_fit(time.perf_counter() - eval_started)
        eval_every = o.eval_every or o.checkpoint_every
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        status = "completed"
        while self.step < self.options.steps:
            loss, cancelled = self.train_step()
            if cancelled:
                status = "cancelled"
                break
            self.last_loss = loss
            window_loss += loss
            window_steps += 1
            now = time.perf_counter()
            self.steps_per_s = window_steps / max(now - window_start, 1e-9)
            if fit is not None:
                self._refit(fit, now)
            self._report("step")
            if self.step % o.log_every == 0 or self.step == self.options.steps:
                self._write_log(
                    {
                        "event": "train",
                        "step": self.step,
                        "loss": window_loss / window_steps,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "steps_per_s": self.steps_per_s,
                        "wall_s": self.wall_s,
                    }
                )
                window_loss, window_steps, window_start = 0.0, 0, now
            if self.ctx.is_main and (self.step % eval_every == 0 or self.step == self.options.steps):
                self.evaluate()
            if self.step % o.checkpoint_every == 0 and self.step < self.options.steps:
                self.save()
        self.save()
        digests = self.finish() if self.ctx.distributed else [weights_digest(self.model)]
        self._write_log({"event": "done", "status": status, "step": self.step, "wall_s": self.wall_s})
        self._report("done")
        return TrainResult(
            status=status,
            step=self.step,
            checkpoint=self.paths.stem,
            loss=self.last_loss,
            heldout_loss=self.heldout_loss,
            initial_heldout_loss=self.initial_heldout_loss,
            wall_s=self.wall_s,
            log_path=self.log_path,
            sample_path=self.sample_path if self.sample_path.exists() else None,
            replica_digests=digests,
        )


def train(options: TrainOptions, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> TrainResult:
    """Train (or, with ``options.resume``, continue training) a model; see the module doc.

    progress: called on the training thread with a ``TrainProgress`` after every step, evaluation and
    checkpoint (rank 0 only). cancel: set it from any thread; the run stops after the current step,
    writes a checkpoint and returns with status "cancelled".
    Raises ``TrainingError`` (bad options, data, resume) or ``TrainingDiverged`` (NaN/Inf).
    """
    try:
        options.validate()
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    run = _Run(options, progress, cancel)
    try:
        run.setup()
        return run.run()
    finally:
        run.ctx.stop()
