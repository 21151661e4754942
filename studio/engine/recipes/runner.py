"""Running a recipe: data → train (or continue) → score → export the shipped checkpoint → record.

Where a run starts from, in order: the run folder's own training state (``runs/NAME/NAME.train.
safetensors``: an exact resume), else the shipped checkpoint (``resources/models/NAME``: a warm start
with a fresh optimizer, the step count going on from its card), else random weights. So every run
improves on what ships. ``fresh=True`` ignores both (the old run folder is moved aside).

Everything runs on the caller's thread; ``cancel`` (or the ``minutes`` time box) stops training after
the current step with a checkpoint, and the run still scores and exports what it has.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine.checkpoints import (
    CheckpointError,
    CheckpointPaths,
    load_model,
    read_document,
    save_checkpoint,
)
from studio.engine.models.base import CancelToken, GenerateRequest
from studio.engine.recipes import scoring
from studio.engine.recipes.data import checkout_root, ensure_data
from studio.engine.recipes.record import append_run_record
from studio.engine.recipes.spec import Recipe
from studio.engine.train.loop import ProgressFn, TrainResult, train
from studio.engine.train.options import TrainOptions

log = logging.getLogger(__name__)


@dataclass
class RecipeRun:
    """How to run a recipe here.

    device: "cpu", "cuda", "cuda:N". steps: steps this run adds (None: the schedule's). minutes: stop
    training after this much wall time (checkpointed; None: no limit); with steps None the schedule is
    also fitted to the minutes (``TrainOptions.fit_seconds``: it ends, decayed, when they are up).
    data: a prepared set to use (None: ``data/<dataset>``, prepared on first use). runs_dir: where run folders live (None:
    ``<checkout>/runs``). export_dir: where the fp16 bundle goes (None: the bundled models folder;
    ``export=False``: nowhere). fresh: start from random weights. install: run scripts/setup-data
    when the data's packages are missing. batch / segment_hops / config: overrides (tiny CI runs).
    eval_utterances: test utterances scored (None: the recipe's). record: the Markdown file whose
    runs table gets a row (None: none). seed: of the run and of the scoring. amp: use the
    schedule's autocast on CUDA (False: float32 throughout). checkpoint_every: None = the schedule's.
    export_worse: export the run even when it ended worse than the shipped model: a warm start whose
    held-out loss rose, or any run whose copy synthesis scored worse than the shipped card's on most
    of PESQ / STOI / MCD / DNSMOS over the same utterances (the loss and the copy synthesis can part
    ways: a CPU continuation of the H100-trained speech-wavernn lowered the loss and worsened all
    four). By default such a run is kept in its folder, not exported.
    """

    device: str = "cpu"
    steps: int | None = None
    minutes: float | None = None
    data: str | None = None
    runs_dir: Path | None = None
    export_dir: Path | None = None
    export: bool = True
    fresh: bool = False
    install: bool = True
    batch: int | None = None
    segment_hops: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    eval_utterances: int | None = None
    sample_seconds: float | None = None
    record: Path | None = None
    seed: int = 0
    checkpoint_every: int | None = None
    amp: bool = True
    export_worse: bool = False


@dataclass
class RecipeResult:
    """What a recipe run did: the training result, where it started from, scores, exported files."""

    recipe: str
    started_from: str
    train: TrainResult
    scores: dict[str, Any]
    exported: Path | None
    sample: Path | None
    files: dict[str, int] = field(default_factory=dict)
    time_boxed: bool = False
    note: str = ""  # e.g. why the run was not exported


def default_runs_dir() -> Path:
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "runs"


def default_export_dir() -> Path:
    from studio.engine.catalog import bundled_models_dir

    folder = bundled_models_dir()
    if folder is None:
        raise ValueError("no bundled models folder here (not a source checkout): give an export folder")
    return folder


def _has_training_state(stem: Path) -> bool:
    return CheckpointPaths(stem).train.is_file()


def _shipped(stem: Path) -> bool:
    paths = CheckpointPaths(stem)
    return paths.json.is_file() and paths.weights.is_file()


def _move_aside(folder: Path) -> None:
    if folder.exists():
        target = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(folder), str(target))
        log.info("moved the earlier run %s to %s", folder, target)


NETWORK_KINDS = {"lpc_order": 0, "mode": "mulaw", "pitch_inputs": False}
"""Config fields (with their defaults) that make another kind of network, not just another size: a run
folder whose model differs from its recipe in one of them is not continued silently (a plain WaveRNN
run under the recipe that is now the LPC one). Sizes may differ (tiny CI runs override them)."""


def _check_same_network(recipe: Recipe, document: dict[str, Any], where: Path) -> None:
    config = document.get("card", {}).get("config", {})
    differ = [
        f"{key}={config.get(key, default)!r} (recipe: {recipe.config[key]!r})"
        for key, default in NETWORK_KINDS.items()
        if key in recipe.config and config.get(key, default) != recipe.config[key]
    ]
    if differ:
        raise ValueError(
            f"{_relative(where)} holds another network than recipe {recipe.name}: {', '.join(differ)}; "
            "run with --fresh (the old run folder is moved aside) to start the recipe's network"
        )


def _warm_start_changes(recipe: Recipe, run: RecipeRun, shipped: dict[str, Any]) -> dict[str, Any]:
    """The recipe's settings a warm start from the shipped bundle (card ``shipped``) takes over: the
    family's ``warm_start_fields`` whose recipe value differs from the bundle's (a recipe that adds the
    pitch inputs or noise injection applies them to the shipped weights)."""
    from studio.engine.models.base import get_family

    fields = get_family(recipe.family).model_class.warm_start_fields
    config = shipped.get("card", {}).get("config", {})
    wanted = {**recipe.config, **run.config}
    defaults = {f.name: f.default for f in dataclasses.fields(get_family(recipe.family).config_class)}
    return {k: wanted[k] for k in fields if k in wanted and config.get(k, defaults.get(k)) != wanted[k]}


def plan_options(recipe: Recipe, run: RecipeRun, data: Path, stem: Path, shipped: Path | None) -> tuple[TrainOptions, str]:
    """The ``TrainOptions`` of this run and a phrase saying where it starts from."""
    schedule = recipe.schedule(run.device)
    steps = run.steps if run.steps is not None else schedule.steps
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    resume = not run.fresh and _has_training_state(stem)
    init_from = None
    changes: dict[str, Any] = {}
    start = 0
    if resume:
        _check_same_network(recipe, read_document(stem), stem)
        start = int(read_document(stem).get("training_state", {}).get("step", 0))
        origin = f"resumed {_relative(stem)} at step {start}"
    elif not run.fresh and shipped is not None and _shipped(shipped):
        init_from = str(shipped)
        start = int(read_document(shipped)["card"].get("training", {}).get("steps", 0) or 0)
        origin = f"warm start from the shipped {shipped.name} (step {start})"
        changes = _warm_start_changes(recipe, run, read_document(shipped))
        if changes:
            origin += " with " + ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
    else:
        origin = "random weights"
    from studio.engine.audio.features import get_profile

    hop = get_profile(recipe.profile).hop_length
    options = TrainOptions(
        family=recipe.family,
        data=[str(data)],
        out=str(stem),
        config={} if resume else changes if init_from else {**recipe.config, **run.config},
        profile=recipe.profile,
        steps=start + steps,
        batch=run.batch or schedule.batch,
        segment=(run.segment_hops or schedule.segment_hops) * hop,
        lr=schedule.lr,
        lr_schedule=schedule.lr_schedule,
        lr_final=schedule.lr_final,
        # a warm start has a fresh Adam, whose first steps move every weight by about the rate: always
        # warm up from a small rate (the whole schedule's warm-up, even in a short run); 2 steps at the
        # full rate took the shipped speech-wavernn's held-out loss from 2.51 to 6.40
        warmup_steps=schedule.warmup_steps if init_from else min(schedule.warmup_steps, max(steps // 4, 0)),
        checkpoint_every=run.checkpoint_every or schedule.checkpoint_every,
        log_every=10,
        resume=resume,
        init_from=init_from,
        device=run.device,
        amp=schedule.amp if run.amp and str(run.device).startswith("cuda") else None,
        seed=run.seed,
        sample_seconds=0.0,
        # minutes without steps: the schedule ends when the minutes do (the time box stays the hard stop)
        fit_seconds=run.minutes * 60.0 if run.minutes is not None and run.steps is None else None,
    )
    return options, origin


def _train(
    options: TrainOptions, minutes: float | None, progress: ProgressFn | None, cancel: CancelToken | None
) -> tuple[TrainResult, bool]:
    """Train; returns the result and whether the ``minutes`` time box stopped it."""
    # the time box cancels a child token: the caller's token (a window's Stop, the next recipe of
    # `--recipe all` sharing it) stays as the caller left it
    token = cancel.child() if cancel is not None else CancelToken()
    fired = threading.Event()

    def time_up() -> None:
        fired.set()
        token.cancel()

    timer = None
    if minutes is not None:
        timer = threading.Timer(max(minutes, 0.0) * 60.0, time_up)
        timer.daemon = True
        timer.start()
    try:
        return train(options, progress=progress, cancel=token), fired.is_set()
    finally:
        if timer is not None:
            timer.cancel()


def _sample_and_score(recipe: Recipe, model, data: Path, run: RecipeRun, sample_path: Path) -> dict[str, Any]:
    from studio.engine.audio.files import load, save
    from studio.engine.datasets.manifest import read_manifest

    manifest = read_manifest(data)
    test = manifest.split("test") or manifest.split("validation")
    seconds = run.sample_seconds if run.sample_seconds is not None else recipe.sample_seconds
    started = time.perf_counter()
    if recipe.vocoder:
        utterances = run.eval_utterances if run.eval_utterances is not None else recipe.eval_utterances
        scores = scoring.score_vocoder(model, data, utterances, seed=run.seed)
        from studio.engine.audio.features import compute_mel

        audio, _ = load(test[0].path, sample_rate=model.sample_rate, mono=True)
        mel = compute_mel(audio[: int(seconds * model.sample_rate)], model.profile)
        made = model.generate(GenerateRequest(mel=mel, seed=run.seed))
        scores["envelope_correlation"] = round(scoring.envelope_correlation(made, mel, model.profile), 4)
        scores["loudness_contour_correlation"] = round(scoring.loudness_contour_correlation(made, mel, model.profile), 4)
    else:
        n = max(int(seconds * model.sample_rate), model.profile.hop_length)
        made = model.generate(GenerateRequest(num_samples=n, seed=run.seed, temperature=1.0))
        reference, _ = load(test[0].path, sample_rate=model.sample_rate, mono=True)
        scores = {"free_generation": scoring.score_free_generation(made, model.sample_rate, reference[: n])}
    scores["scoring_wall_s"] = round(time.perf_counter() - started, 1)
    sample_path.parent.mkdir(parents=True, exist_ok=True)
    save(sample_path, made, model.sample_rate)
    return scores


def _relative(path: Path) -> str:
    root = checkout_root()
    try:
        return str(path.resolve().relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


GENERATION_SETTINGS = ("sampling_temperature", "spectral_projection")
"""Config fields that change how a model generates, not its weights: a bundle always takes the recipe's."""


def export_bundle(recipe: Recipe, run_stem: Path, target: Path, scores: dict[str, Any], origin: str) -> dict[str, int]:
    """Write the run's final weights as the fp16 bundle ``target`` (NAME.safetensors + NAME.json) with
    its card: description, provenance (the recipe), training record, metrics. Returns file sizes."""
    model = load_model(run_stem, family=recipe.family)
    settings = {k: v for k, v in recipe.config.items() if k in GENERATION_SETTINGS and getattr(model.config, k, None) != v}
    if settings:  # a run resumed from before the recipe changed how its model generates
        model = model.reconfigured(settings)
    model.name = recipe.name
    training = dict(model.extra_card.get("training", {}))
    data = dict(training.get("data", {}))
    data["sources"] = [_relative(Path(s)) for s in data.get("sources", [])]
    training["data"] = data
    training["started_from"] = origin
    model.extra_card = {
        "description": recipe.description,
        "provenance": {
            "recipe": recipe.name,
            "command": f"studio train --recipe {recipe.name}",
            "dataset": recipe.dataset,
            "recipe_config": dict(recipe.config),
            "trained_by": "Waveform Studio recipes (studio/engine/recipes)",
        },
        "training": training,
        "metrics": {**dict(model.extra_card.get("metrics", {})), **scores},
    }
    paths = save_checkpoint(model, target, half=True)
    return {p.name: p.stat().st_size for p in (paths.weights, paths.json)}


def run_recipe(
    recipe: Recipe, run: RecipeRun, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
    say: Callable[[str], None] | None = None,
) -> RecipeResult:
    """Run ``recipe`` as ``run`` says (see the module doc); returns what it did."""
    tell = say or log.info
    data = ensure_data(recipe, run.data, install=run.install)
    tell(f"{recipe.name}: data {data}")
    runs_dir = run.runs_dir or default_runs_dir()
    folder = runs_dir / recipe.name
    stem = folder / recipe.name
    export_dir = (run.export_dir or default_export_dir()) if run.export else None
    shipped = None if export_dir is None else export_dir / recipe.name
    if run.fresh:
        _move_aside(folder)
    options, origin = plan_options(recipe, run, data, stem, shipped)
    tell(f"{recipe.name}: {origin}; training to step {options.steps} on {options.device}")
    result, time_boxed = _train(options, run.minutes, progress, cancel)
    tell(f"{recipe.name}: {result.status} at step {result.step} ({result.wall_s:.0f} s in all); scoring")
    model = load_model(stem, family=recipe.family)
    sample_path = folder / f"{recipe.name}.sample.wav"
    scores = _sample_and_score(recipe, model, data, run, sample_path)
    exported, files, note = None, {}, ""
    start_loss = _first_heldout_loss(result.log_path) if options.init_from else None
    if (export_dir is not None and not run.export_worse and start_loss is not None
            and result.heldout_loss is not None and result.heldout_loss > start_loss):
        note = f"not exported: held-out loss {result.heldout_loss:.3f} > the shipped model's {start_loss:.3f}"
        tell(f"{recipe.name}: {note} at the start of this run; the run stays in {folder} "
             "(continue it with more steps, or export it anyway with --export-worse)")
        export_dir = None
    worse = [] if export_dir is None or run.export_worse else scoring.copy_synthesis_regression(scores, _card_metrics(shipped))
    if worse:
        note = "not exported: copy synthesis worse than the shipped model's (" + ", ".join(worse) + ")"
        tell(f"{recipe.name}: {note}; the run stays in {folder} (export it anyway with --export-worse)")
        export_dir = None
    if export_dir is not None:
        exported = export_dir / recipe.name
        files = export_bundle(recipe, stem, exported, scores, origin)
        tell(f"{recipe.name}: exported {exported} ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in files.items())})")
    outcome = RecipeResult(recipe.name, origin, result, scores, exported, sample_path, files, time_boxed, note)
    if run.record is not None:
        append_run_record(run.record, outcome, load_model(stem).extra_card.get("training", {}))
    return outcome


def rescore_bundle(recipe: Recipe, run: RecipeRun, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score the shipped bundle (``<export dir>/NAME``) here and write the scores into its card.

    For bundles trained elsewhere: a GPU machine without the metric packages scores only what it has
    (LSD, MR-STFT), on fewer utterances. This scores the recipe's test utterances (``run.eval_utterances``)
    with every metric installed here, as ``run_recipe`` would, and replaces the card's scores; the
    weights, training record and held-out loss stay as they are. Returns the scores.
    """
    tell = say or log.info
    data = ensure_data(recipe, run.data, install=run.install)
    target = (run.export_dir or default_export_dir()) / recipe.name
    if not _shipped(target):
        raise ValueError(f"{_relative(target)}: no bundle to rescore (train the recipe first)")
    model = load_model(target, family=recipe.family)
    sample_path = (run.runs_dir or default_runs_dir()) / recipe.name / f"{recipe.name}.rescore.wav"
    scores = _sample_and_score(recipe, model, data, run, sample_path)
    model.extra_card = {**model.extra_card, "metrics": {**dict(model.extra_card.get("metrics", {})), **scores}}
    save_checkpoint(model, target, half=True)
    tell(f"{recipe.name}: rescored {_relative(target)}")
    return scores


def _card_metrics(bundle: Path | None) -> dict[str, Any]:
    """The ``metrics`` of a shipped bundle's card ({} when there is none or it cannot be read)."""
    if bundle is None or not CheckpointPaths.of(bundle).json.exists():
        return {}
    try:
        return dict(read_document(bundle)["card"].get("metrics") or {})
    except (CheckpointError, KeyError, TypeError):
        log.warning("cannot read the shipped card of %s; its scores are not compared", bundle, exc_info=True)
        return {}


def _first_heldout_loss(log_path: Path) -> float | None:
    """The first held-out loss of a run's JSON-lines log (for a warm start: the starting weights'), or None."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "eval" and isinstance(record.get("heldout_loss"), (int, float)):
            return float(record["heldout_loss"])
    return None


def schedule_summary(recipe: Recipe, device: str) -> dict[str, Any]:
    return dataclasses.asdict(recipe.schedule(device))
