"""``studio eval-convert``: voice conversion measured against the issue's bounds.

    studio eval-convert --pitch 4 [FILES…] [--limit N] [--json]        pitch shift accuracy, duration, STOI, DNSMOS
    studio eval-convert --from ru --to allison [--limit N] [--json]     speaker similarity (resemblyzer), log-F0, STOI, DNSMOS
    studio eval-convert --live [--to TARGET] [--pitch N] [--seconds 60] [--json]   underruns and latency, real sound server

Without FILES the held-out utterances of the source corpus (``--from``, default ru) are used: festvox-ru
ru_0801–ru_0844 or every 12th Allison prompt (see studio/engine/convert/corpora.py).
"""

from __future__ import annotations

import argparse
import json

from studio.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-convert",
        help="measure voice conversion: pitch accuracy, speaker similarity, content, live underruns/latency",
        description="Measure voice conversion against the bounds of issue 7 on held-out speech (or FILES).",
    )
    p.add_argument("files", nargs="*", help="clips to convert (default: the source corpus's held-out split)")
    p.add_argument("--pitch", type=float, help="evaluate a pitch shift of this many semitones")
    p.add_argument("--to", dest="target", help="target voice (name or path) for speaker conversion or --live")
    p.add_argument("--from", dest="source", default="ru", help="source voice/corpus: ru or allison (default ru)")
    p.add_argument("--limit", type=int, default=6, help="at most this many clips (default 6)")
    p.add_argument("--no-content", action="store_true", help="skip STOI and DNSMOS (faster)")
    p.add_argument("--utterance-stats", action="store_true", help="map from each utterance's statistics, not the source voice's")
    p.add_argument("--live", action="store_true", help="live mode through a private PulseAudio server")
    p.add_argument("--seconds", type=float, default=60.0, help="--live: how long to run (default 60)")
    p.add_argument("--render", default="world", metavar="RENDERER",
                   help="what renders the converted speech: 'world' (default) or a mel vocoder from `studio models`")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(handler=run)


def _clips(args: argparse.Namespace):
    from studio.engine.convert.corpora import corpus, load_speech
    from studio.engine.convert.evaluate import load_clips

    if args.files:
        return load_clips(args.files[: args.limit])
    held = corpus(args.source).held_out
    picks = held[:: max(1, len(held) // args.limit)][: args.limit]
    return [(p.name, load_speech(p, 16000), 16000) for p in picks]


def _print_report(report: dict) -> None:
    print(f"{report['kind']}: {report['target']}")
    for c in report["clips"]:
        fields = [f"{c['clip']:<28}", f"{c['seconds']:5.2f} s", f"F0 {c['f0_in_hz']:5.1f} → {c['f0_out_hz']:5.1f} Hz"]
        if c["shift_st"] is not None:
            fields.append(f"shift {c['shift_st']:+.2f} st")
        if c["similarity_target"] is not None:
            fields.append(f"sim target {c['similarity_target']:.3f} source {c['similarity_source']:.3f}")
        if c["stoi"] is not None:
            fields.append(f"STOI {c['stoi']:.3f}")
        if c["dnsmos_ovrl"] is not None:
            fields.append(f"DNSMOS {c['dnsmos_ovrl']:.2f}")
        print("  " + "  ".join(fields))
    print("means: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in report["means"].items()))
    for name, group in report.get("extra", {}).get("by_length", {}).items():
        print(f"  {name.replace('_', ' ')}: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in group.items()))
    m = report["means"]
    if m.get("input_similarity_own") is not None or m.get("input_dnsmos_ovrl") is not None:
        own = m.get("input_similarity_own")
        dns = m.get("input_dnsmos_ovrl")
        parts = ([f"similarity to its own speaker {own:.3f}"] if own is not None else []) + (
            [f"DNSMOS {dns:.2f}"] if dns is not None else [])
        print("the unconverted input, for scale: " + ", ".join(parts))
    print("bounds: " + ", ".join(f"{k} {'met' if v else ('n/a' if v is None else 'MISSED')}" for k, v in report["bounds"].items()))
    for s in report.get("skipped", []):
        print(f"skipped: {s}")


def run(args: argparse.Namespace) -> int:
    from studio.engine.convert import (
        ConversionError,
        ConversionTarget,
        VoiceError,
        VoiceTransform,
        find_voice,
    )

    if args.live and args.render != "world":
        raise CliError("--live renders with WORLD (a vocoder does not fit the live time budget); drop --render")
    try:
        if args.live:
            from studio.engine.convert.live_eval import run_live_eval

            target = ConversionTarget(
                transform=VoiceTransform(pitch_semitones=args.pitch or 0.0),
                voice=find_voice(args.target) if args.target and args.target != "self" else None,
            )
            result = run_live_eval(target, seconds=args.seconds)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                st = result["stats"]
                print(f"live {result['target']}: {result['seconds']:.0f} s, measured latency {result['latency_ms']:.0f} ms "
                      f"(median of {', '.join(f'{v:.0f}' for v in result['latency_runs_ms'])}; engine estimate {st['latency_ms']:.0f} ms), underruns {st['underruns']}, device underflows "
                      f"{st['device_underflows']}, input overflows {st['input_overflows']} (device "
                      f"{st['device_input_overflows']}), longest callback pause {st['longest_callback_gap_ms']:.0f} ms, "
                      f"inference mean {st['inference_ms_mean']:.1f} ms (max recent {st['inference_ms_max_recent']:.1f}) per "
                      f"{st['hop_ms']:.0f} ms block, real-time priority {st['realtime']}")
                pauses = result["machine_pauses"]
                if pauses["longest_ms"] is not None:
                    print(f"machine pauses (all CPUs stopped): {len(pauses['pauses'])} over 10 ms, longest "
                          f"{pauses['longest_ms']:.0f} ms (the live path rides through ~30 ms)")
                print("bounds: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in result["bounds"].items()))
            return 0 if all(result["bounds"].values()) else 1
        from studio.engine.catalog import ModelNotFoundError
        from studio.engine.checkpoints import CheckpointError
        from studio.engine.convert import evaluate, renderer_for

        try:
            renderer = renderer_for(args.render)
        except (ModelNotFoundError, CheckpointError, ValueError) as exc:
            raise CliError(f"--render {args.render}: {exc}") from exc
        clips = _clips(args)
        if args.pitch is not None:
            report = evaluate.pitch_shift_report(clips, args.pitch, content=not args.no_content, renderer=renderer)
        elif args.target:
            report = evaluate.speaker_report(
                clips, find_voice(args.target), find_voice(args.source), content=not args.no_content,
                use_source_stats=not args.utterance_stats, renderer=renderer,
            )
        else:
            raise CliError("give --pitch N, --to VOICE (speaker conversion) or --live")
    except (ConversionError, VoiceError) as exc:
        raise CliError(str(exc)) from exc
    data = report.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_report(data)
    return 0 if all(v is not False for v in report.bounds.values()) else 1
