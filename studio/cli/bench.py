"""``studio bench``: how fast each model family generates, beside its plain baseline, on this machine.

Per case it prints samples per second (kHz), times real time, time to the first audio block (warm and
cold), peak resident memory, threads, device, torch version and load average; every figure comes with
the ratio to the family's plain path measured in the same run. ``--json`` prints one JSON object
(schema: ``studio.engine.bench.runner.BenchReport.to_dict``).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure generation speed of each model family against its plain baseline",
        description="Generate SECONDS of audio per case with each family's fast streaming path and run "
        "the plain baseline of the same network beside it (WaveNet recomputing its receptive field per "
        "sample, WaveRNN eager and unbatched, WaveGlow eager float32 with weight norm), on a shorter input "
        "sized to --baseline-budget. Reports rates, so lengths may differ. Sizes: 'reference' (the "
        "published architectures, random weights), 'default' (the bundled models, or the training "
        "defaults when none is bundled), 'tiny' (for tests).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--family", action="append", choices=("wavenet", "wavernn", "waveglow"),
                        help="benchmark only this family (repeatable; default: all three)")
    parser.add_argument("--case", action="append", choices=("single", "folded", "parallel", "parallel-fp16"),
                        help="run only this case of each family (repeatable; default: all; parallel-fp16: CUDA only)")
    parser.add_argument("--size", choices=("reference", "default", "tiny"), default="reference",
                        help="network size (default: reference)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--seconds", type=float, default=2.0, metavar="S",
                        help="seconds of audio per fast run (default: 2)")
    parser.add_argument("--baseline-budget", type=float, default=4.0, metavar="S",
                        help="about how many wall-clock seconds each baseline may run (default: 4)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch intra-op threads for the run (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, latents and sampling (default: 0)")
    parser.add_argument("--projection", type=int, default=None, metavar="N",
                        help="also run each case with the spectral projection of N passes after the first, beside the "
                        "case without it (the plain cases always run without: a bundled model's own setting is off)")
    parser.add_argument("--gui", action="store_true",
                        help="also measure the window's event-loop latency while the first family's default model "
                        "vocodes and plays (offscreen unless QT_QPA_PLATFORM says otherwise; needs a sound output)")
    parser.add_argument("--memory", action="store_true",
                        help="instead of the speed cases: peak resident memory of a --memory-short and a --seconds "
                        "long generation per family, each in a fresh subprocess (e.g. --memory --seconds 60)")
    parser.add_argument("--memory-short", type=float, default=10.0, metavar="S",
                        help="length of the short --memory run (default: 10 s)")
    parser.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from studio.cli import CliError
    from studio.engine.bench import BenchOptions, render_text, run_bench

    families = tuple(dict.fromkeys(args.family)) if args.family else ("wavenet", "wavernn", "waveglow")
    try:
        options = BenchOptions(
            families=families, size=args.size, device=args.device, seconds=args.seconds,
            baseline_budget_s=args.baseline_budget, threads=args.threads, seed=args.seed,
            cases=tuple(dict.fromkeys(args.case)) if args.case else (), projection=args.projection,
        )
    except (ValueError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    if args.memory:
        return _run_memory(args, options)
    report = run_bench(options)
    if args.gui:
        from studio.ui.latency_bench import measure_gui_latency

        size = "tiny" if args.size == "tiny" else "default"
        report.extras.append(measure_gui_latency(families[0], seconds=max(args.seconds, 1.0), seed=args.seed, size=size))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_text(report))
    return 0


def _run_memory(args: argparse.Namespace, options) -> int:
    from studio.cli import CliError
    from studio.engine.bench.measure import MachineInfo, load_average
    from studio.engine.bench.memory import memory_case

    short = min(args.memory_short, options.seconds)
    if not short > 0:
        raise CliError(f"--memory-short must be > 0 s, got {args.memory_short}")
    start = load_average()
    cases = []
    for family in options.families:
        try:
            cases.append(memory_case(family, options.size, options.seconds, short, options.seed, options.threads))
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    report = {"schema": 1, "kind": "memory", "machine": MachineInfo.probe("cpu").__dict__,
              "load_average_start": start, "load_average_end": load_average(), "cases": cases}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for case in cases:
            print(case["summary"])
    return 0
