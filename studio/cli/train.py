"""``studio train``: train a model on a folder of audio, headless (also under ``torchrun``).

``studio train --recipe NAME`` runs one of the bundled models' recipes instead (``all``: every one;
``list``: show them): prepare its data, train or continue it, score it and export the fp16 bundle
into resources/models (see studio/engine/recipes and docs/models.md).

Progress goes to stdout: one line rewritten in place (``\\r``) on a terminal, a plain line every
``--log-every`` steps otherwise; losses also go to ``NAME.log.jsonl``. Only rank 0 prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from studio.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on audio files",
        description="Train a WaveNet, WaveRNN or WaveGlow on a folder (or list) of audio files, or run a "
        "bundled model's recipe (--recipe NAME|all|list). "
        "WaveNet and WaveRNN are trained as mel-conditioned vocoders by default (they then need mel frames "
        "to generate, e.g. `studio vocode`); add --unconditional for a model that generates audio freely "
        "(`studio generate`). WaveGlow is always mel-conditioned. "
        "Runs unchanged under `torchrun --nproc-per-node K -m studio train ...` (data parallel).",
    )
    p.add_argument("--recipe", metavar="NAME",
                   help="run a bundled model's recipe (data, training, scoring, export); 'all' or 'list'")
    p.add_argument("--family", help="model family: wavenet, wavernn or waveglow")
    p.add_argument("--data", nargs="+", metavar="DIR_OR_FILE",
                   help="audio folders, files or globs, or a prepared set (trains on its train split); "
                   "with --recipe: a prepared set to use instead of data/<set>")
    p.add_argument(
        "--out", metavar="NAME",
        help="checkpoint name (saved in the user models folder) or path stem (folder/NAME)",
    )
    p.add_argument("--config", metavar="JSON", help="family config overrides: inline JSON or a JSON file")
    p.add_argument("--unconditional", action="store_true",
                   help="train a model without mel conditioning (n_mels=0) that generates freely; "
                   "wavenet and wavernn only (the default is a mel-conditioned vocoder)")
    p.add_argument("--profile", metavar="PRESET", help="mel feature preset (default: the family's)")
    p.add_argument("--steps", type=int,
                   help="total steps to reach (default 1000); with --recipe: steps this run adds (default: the recipe's)")
    p.add_argument("--batch", type=int, help="segments per step and process (default: the family's)")
    p.add_argument("--segment", type=int, metavar="SAMPLES", help="segment length (rounded down to a multiple of the hop)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the family's)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine", "exponential"), default="constant")
    p.add_argument("--lr-final", type=float, default=0.1, help="final lr as a fraction of --lr for decaying schedules")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS", help="linear learning-rate warm-up steps")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this (default 1)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N", help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, metavar="N", help="steps between held-out evaluations")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="steps between log lines")
    p.add_argument("--heldout", metavar="GLOB", help="hold out the files matching this glob (default: hash split)")
    p.add_argument("--sample-seconds", type=float, default=1.0, help="length of NAME.sample.wav (0 = none)")
    p.add_argument("--resume", action="store_true", help="continue NAME from its last checkpoint")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--amp", choices=("bf16",), help="bfloat16 autocast of forward and loss (CUDA only)")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="start from this checkpoint's weights and config "
                   "(a fresh optimizer; the step count goes on from its card); --config may then change only "
                   "settings a warm start can take (WaveRNN: noise_injection, pitch_inputs, sampling_temperature)")
    r = p.add_argument_group("recipe runs (--recipe)")
    r.add_argument("--minutes", type=float, help="stop training after this many minutes (checkpointed), then score and export; "
                   "without --steps the learning-rate schedule is fitted to end when the minutes do")
    r.add_argument("--fresh", action="store_true", help="start from random weights (the old run folder is moved aside)")
    r.add_argument("--no-setup", action="store_true", help="never run scripts/setup-data for missing data packages")
    r.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too (the GPU schedules use bf16)")
    r.add_argument("--no-export", action="store_true", help="do not write the bundle into resources/models")
    r.add_argument("--export-dir", metavar="DIR", help="write the bundle here instead of resources/models")
    r.add_argument("--export-worse", action="store_true", help="export a warm-started run even when its held-out "
                   "loss ended worse than the shipped model's (by default it stays in runs/NAME)")
    r.add_argument("--rescore", action="store_true", help="no training: score the recipe's bundled model here "
                   "(every installed metric, e.g. after a GPU run) and write the scores into its card")
    r.add_argument("--runs-dir", metavar="DIR", help="run folders (default: <checkout>/runs)")
    r.add_argument("--eval-utterances", type=int, metavar="N", help="held-out test utterances scored (default: the recipe's)")
    r.add_argument("--record", metavar="MD", help="add the run to this Markdown file's runs table "
                   "(default: docs/models.md when exporting to resources/models)")
    p.set_defaults(handler=run_train)


class ProgressPrinter:
    """Draws training progress: a ``\\r`` line on a terminal, a plain line every ``every`` steps otherwise."""

    def __init__(self, stream, every: int) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = max(1, every)
        self._last_draw = 0.0

    def __call__(self, p) -> None:
        held = "—" if p.heldout_loss is None else f"{p.heldout_loss:.4f}"
        loss = "—" if p.loss is None else f"{p.loss:.4f}"
        text = (
            f"step {p.step}/{p.total_steps}  loss {loss}  held-out {held}  "
            f"{p.steps_per_s:.2f} steps/s  {p.elapsed_s:.0f} s"
        )
        if self.tty:
            now = time.monotonic()
            if p.event == "step" and now - self._last_draw < 0.1 and p.step != p.total_steps:
                return
            self._last_draw = now
            end = "\n" if p.event == "done" else ""
            self.stream.write(f"\r{text}\x1b[K{end}")
        elif p.event in ("eval", "checkpoint", "done") or (p.event == "step" and p.step % self.every == 0):
            self.stream.write(f"{p.event:10s} {text}\n")
        self.stream.flush()


def run_train(args: argparse.Namespace) -> int:
    """``studio train``; under ``torchrun`` (WORLD_SIZE > 1) the process ends here without interpreter teardown.

    Why: gloo's worker threads can still be releasing the last collective's tensors when Python
    finalizes; releasing them needs the GIL, which a finalizing interpreter no longer gives, and the C++
    runtime aborts (SIGABRT, "terminate called without an active exception"). With torch 2.13 that
    turned about one finished two-process run in eight into a failure reported by torchrun. Every file
    is written and closed by then (checkpoints atomically), so ending with ``os._exit`` after flushing
    stdout, stderr and logging loses nothing.
    """
    from studio.engine.train.distributed import Context

    if not Context.from_env().distributed:
        return _run_train(args)
    try:
        code = _run_train(args)
    except CliError as exc:
        print(f"studio train: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from studio.cli.models import parse_device
    from studio.engine.models.base import CancelToken
    from studio.engine.train.distributed import Context
    from studio.engine.train.loop import TrainingError, train
    from studio.engine.train.options import TrainOptions, parse_config

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recipe:
        return run_recipes(args)
    missing = [f"--{name}" for name in ("family", "data", "out") if not getattr(args, name)]
    if missing:
        raise CliError(f"give {', '.join(missing)} (or --recipe NAME to train a bundled model)")
    try:
        config = parse_config(args.config)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.unconditional:
        config = unconditional_config(args, config)
    options = TrainOptions(
        family=args.family,
        data=list(args.data),
        out=args.out,
        config=config,
        profile=args.profile,
        steps=args.steps if args.steps is not None else 1000,
        batch=args.batch,
        segment=args.segment,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        lr_final=args.lr_final,
        warmup_steps=args.warmup,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        log_every=args.log_every,
        heldout=args.heldout,
        resume=args.resume,
        device=parse_device(args.device),
        seed=args.seed,
        sample_seconds=args.sample_seconds,
        init_from=args.init_from,
        amp=args.amp,
    )
    printer = ProgressPrinter(sys.stdout, args.log_every) if Context.from_env().is_main else None
    cancel = CancelToken()

    def on_interrupt(signum, frame) -> None:  # first Ctrl+C: checkpoint and stop; second: the default
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\ninterrupted: saving a checkpoint of the current step (Ctrl+C again to abandon it)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = train(options, progress=printer, cancel=cancel)
    except (TrainingError, ValueError) as exc:
        if printer is not None and printer.tty:
            sys.stdout.write("\n")
        raise CliError(str(exc)) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if printer is not None:
        start = "—" if result.initial_heldout_loss is None else f"{result.initial_heldout_loss:.4f}"
        end = "—" if result.heldout_loss is None else f"{result.heldout_loss:.4f}"
        print(
            f"{result.status}: step {result.step}, held-out loss {start} → {end}, {result.wall_s:.1f} s; "
            f"checkpoint {result.checkpoint}.safetensors"
        )
    return 0


def unconditional_config(args: argparse.Namespace, config: dict) -> dict:
    """``--unconditional``: the ``--config`` overrides with ``n_mels=0``, or a CliError saying why not."""
    from studio.engine.train.options import free_generation_config

    if args.resume or args.init_from:
        raise CliError("--unconditional only applies to a new model: --resume and --init-from keep the checkpoint's conditioning")
    try:
        return free_generation_config(args.family, config)
    except ValueError as exc:
        raise CliError(f"--unconditional: {exc}") from None


def _recipe_list() -> str:
    from studio.engine.recipes import RECIPES

    lines = []
    for r in RECIPES.values():
        cpu, gpu = r.cpu, r.cuda
        lines.append(
            f"{r.name:16s} {r.family:8s} {r.dataset:10s} cpu: {cpu.steps} steps x {cpu.batch} x {cpu.segment_hops} hops; "
            f"cuda: {gpu.steps} steps x {gpu.batch} x {gpu.segment_hops} hops{' bf16' if gpu.amp else ''}"
        )
        lines.append(f"{'':16s} {r.description}")
    return "\n".join(lines)


def run_recipes(args: argparse.Namespace) -> int:
    """``--recipe NAME|all|list``: run bundled models' recipes one after another (see the module doc)."""
    from pathlib import Path

    from studio.cli.models import parse_device
    from studio.engine.datasets.manifest import DatasetError
    from studio.engine.models.base import CancelToken
    from studio.engine.recipes import RECIPES, get_recipe
    from studio.engine.recipes.runner import RecipeRun, default_export_dir, rescore_bundle, run_recipe
    from studio.engine.train.loop import TrainingError

    if args.recipe == "list":
        print(_recipe_list())
        return 0
    if args.family or args.out:
        raise CliError("--recipe fixes the family and the output: leave out --family and --out")
    try:
        names = list(RECIPES) if args.recipe == "all" else [get_recipe(args.recipe).name]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.data and (len(args.data) != 1 or len(names) != 1):
        raise CliError("--data with --recipe takes one prepared set and one recipe")
    export_dir = Path(args.export_dir) if args.export_dir else None
    record = Path(args.record) if args.record else None
    if record is None and not args.no_export and export_dir is None:
        try:
            default_export_dir()
        except ValueError:
            pass
        else:
            from studio.engine.recipes.data import checkout_root

            record = checkout_root() / "docs" / "models.md"
    cancel = CancelToken()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.cancel())
    printer = ProgressPrinter(sys.stdout, args.log_every)
    try:
        for name in names:
            run = RecipeRun(
                device=parse_device(args.device), steps=args.steps, minutes=args.minutes,
                data=args.data[0] if args.data else None, runs_dir=Path(args.runs_dir) if args.runs_dir else None,
                export_dir=export_dir, export=not args.no_export, fresh=args.fresh, install=not args.no_setup,
                batch=args.batch, eval_utterances=args.eval_utterances, record=record, seed=args.seed,
                amp=not args.no_amp, export_worse=args.export_worse,
            )
            if args.rescore:
                try:
                    scores = rescore_bundle(get_recipe(name), run, say=print)
                except (DatasetError, ValueError, OSError) as exc:
                    raise CliError(f"recipe {name}: {exc}") from None
                print(f"{name}: scores {scores}")
                continue
            try:
                result = run_recipe(get_recipe(name), run, progress=printer, cancel=cancel, say=print)
            except (TrainingError, DatasetError, ValueError, OSError) as exc:
                raise CliError(f"recipe {name}: {exc}") from None
            print(f"{name}: {result.train.status} at step {result.train.step}; scores {result.scores}")
            if cancel.cancelled:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
