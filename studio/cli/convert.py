"""``studio convert`` (offline or --live), ``studio voice build|list``: voice conversion, headless."""

from __future__ import annotations

import argparse
import json
import logging
import math

from studio.cli import CliError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert speech: pitch/formant/whisper transforms, or to a target voice (file or --live)",
        description="Convert a recording (IN → --out OUT) or the microphone live (--live). "
        "--to names a target voice (see `studio voice list`) or 'self' for transforms of your own voice.",
    )
    p.add_argument("input", nargs="?", help="audio file to convert (omit with --live)")
    p.add_argument("--to", default="self", help="target voice name or path, or 'self' (default)")
    p.add_argument("--pitch", type=float, default=0.0, help="pitch shift in semitones (duration kept)")
    p.add_argument("--formant", type=float, default=1.0, help="formant ratio: 1.15 = 15%% higher, 0.87 = lower")
    p.add_argument("--whisper", action="store_true", help="render as a whisper (no voicing)")
    p.add_argument("--from-voice", dest="from_voice", help="the source speaker's voice (else measured on the input)")
    p.add_argument("--out", help="output file (.wav, .flac, .ogg, …)")
    p.add_argument("--render", default="world", metavar="RENDERER",
                   help="offline: 'world' (DSP, default) or a mel vocoder from `studio models` (e.g. speech-wavernn, "
                   "trained on the ru voice's speaker) that renders the converted speech")
    p.add_argument("--live", action="store_true", help="microphone in, converted voice out")
    p.add_argument("--seconds", type=float, help="live: stop after this many seconds (default: until Ctrl+C)")
    p.add_argument("--input-device", help="live: input device name or index")
    p.add_argument("--output-device", help="live: output device name or index")
    p.add_argument("--block-ms", type=float, help="live: conversion block in ms (latency vs headroom; default 20, "
                   "with a target voice too)")
    p.add_argument("--output-latency-ms", type=float, help="live: output device buffer in ms (default 32; raise it if the "
                   "device underflows on a busy machine, lower it for less latency)")
    p.add_argument("--gate-db", type=float, default=-55.0, help="live: noise gate threshold in dBFS")
    p.add_argument("--no-gate", action="store_true", help="live: no noise gate")
    p.add_argument("--no-monitor", action="store_true", help="live: convert but play silence")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_convert)

    v = subparsers.add_parser("voice", help="target voices for conversion: build, list, train-content")
    vsub = v.add_subparsers(dest="voice_command", metavar="ACTION")
    b = vsub.add_parser("build", help="build a voice from recordings of one speaker (a few minutes)")
    b.add_argument("name", help="voice name (also the file name)")
    b.add_argument("files", nargs="+", help="recordings of the speaker (WAV/FLAC/OGG/MP3/G.722)")
    b.add_argument("--out", help="folder or path stem to write to (default: the user voices folder)")
    b.add_argument("--description", default="", help="a line about the speaker")
    b.add_argument("--max-minutes", type=float, default=None, help="use at most this much audio")
    b.add_argument("--embedding", action="store_true", help="store the speaker's resemblyzer centroid (for eval-convert)")
    b.set_defaults(handler=run_voice_build)
    t = vsub.add_parser(
        "train-content",
        help="train the content encoder (a phone classifier whose hidden layer keys frame selection) on festvox-ru",
    )
    t.add_argument(
        "--out", help="path stem to write STEM.content.{json,safetensors} (default: over the bundled encoder in a "
        "source checkout, else ru-phones in the user voices folder)",
    )
    t.add_argument("--recordings", type=int, default=None, help="train on the first N labelled training recordings (default: all)")
    t.add_argument("--held-out", type=int, default=None, help="score on the first N held-out recordings (default: all)")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training frames (default 6)")
    t.add_argument("--members", type=int, default=3, help="networks trained with successive seeds and merged (default 3)")
    t.add_argument("--threads", type=int, default=2, help="analysis processes and torch threads")
    t.set_defaults(handler=run_voice_train_content)
    ls = vsub.add_parser("list", help="list the voices")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=run_voice_list)
    v.set_defaults(handler=lambda args: (v.print_help(), 2)[1])


def _target(args: argparse.Namespace):
    from studio.engine.convert import ConversionTarget, VoiceError, VoiceTransform, find_voice

    try:
        transform = VoiceTransform(pitch_semitones=args.pitch, formant_ratio=args.formant, whisper=args.whisper)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    try:
        target_voice = None if args.to in ("self", "", None) else find_voice(args.to)
        source = find_voice(args.from_voice) if args.from_voice else None
    except VoiceError as exc:
        raise CliError(str(exc)) from exc
    return ConversionTarget(transform=transform, voice=target_voice, source=source)


def run_convert(args: argparse.Namespace) -> int:
    from studio.engine.convert import ConversionError

    if args.live and args.render != "world":
        raise CliError("--live renders with WORLD (a vocoder does not fit the live time budget); drop --render")
    target = _target(args)
    try:
        return _live(args, target) if args.live else _offline(args, target)
    except ConversionError as exc:
        raise CliError(str(exc)) from exc


def _offline(args: argparse.Namespace, target) -> int:
    from studio.engine.audio import files
    from studio.engine.catalog import ModelNotFoundError
    from studio.engine.checkpoints import CheckpointError
    from studio.engine.convert import convert_audio, renderer_for

    if not args.input or not args.out:
        raise CliError("give an input file and --out OUT (or use --live)")
    try:
        renderer = renderer_for(args.render)
    except (ModelNotFoundError, CheckpointError, ValueError) as exc:
        raise CliError(f"--render {args.render}: {exc}") from exc
    try:
        audio, sr = files.load(args.input)
    except files.AudioFileError as exc:
        raise CliError(str(exc)) from exc
    result = convert_audio(audio, sr, target, renderer=renderer)
    try:
        written_rate = files.save(args.out, result.audio, result.sample_rate)
    except files.AudioFileError as exc:
        raise CliError(str(exc)) from exc
    summary = {
        "input": args.input, "output": args.out, "target": target.describe(), "renderer": renderer.name,
        "sample_rate": written_rate,
        "seconds": round(result.audio.shape[0] / result.sample_rate, 3),
        "f0_median_in_hz": _hz(result.source_f0_median_hz), "f0_median_out_hz": _hz(result.output_f0_median_hz),
        "timing_s": {k: round(v, 3) for k, v in result.seconds.items()}, "notes": list(result.notes),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        f0_in, f0_out = summary["f0_median_in_hz"], summary["f0_median_out_hz"]
        f0 = f", median F0 {f0_in:.0f} → {f0_out:.0f} Hz" if f0_in is not None and f0_out is not None else ""
        print(f"{args.out}: {summary['seconds']:.2f} s, {target.describe()} ({renderer.name}){f0}")
        for note in result.notes:
            print(f"note: {note}")
    return 0


def _live(args: argparse.Namespace, target) -> int:
    import time

    from studio.engine.audio.devices import AudioDeviceError
    from studio.engine.convert.live import LiveConverter, LiveSettings

    settings = LiveSettings(
        target=target, input_device=args.input_device, output_device=args.output_device, hop_ms=args.block_ms,
        gate_db=None if args.no_gate else args.gate_db, monitor=not args.no_monitor,
    )
    if args.output_latency_ms is not None:
        if not 1.0 <= args.output_latency_ms <= 1000.0:
            raise CliError(f"--output-latency-ms {args.output_latency_ms:g} is out of range: give 1 to 1000 ms")
        settings.output_latency = args.output_latency_ms / 1000.0
    try:
        converter = LiveConverter(settings).start()
    except AudioDeviceError as exc:
        raise CliError(str(exc)) from exc
    try:
        end = None if args.seconds is None else time.monotonic() + args.seconds
        while end is None or time.monotonic() < end:
            time.sleep(1.0 if end is None else min(1.0, max(0.0, end - time.monotonic())))
            st = converter.stats()
            if st.error:
                raise CliError(f"live conversion stopped: {st.error}")
            if not args.json:
                print(f"\r{st.seconds:6.1f} s  latency {st.latency_ms:4.0f} ms  block {st.hop_ms:.0f} ms  "
                      f"inference {st.inference_ms_mean:5.1f} ms (max {st.inference_ms_max_recent:5.1f})  "
                      f"headroom {st.headroom * 100:3.0f} %  underruns {st.underruns}  device underflows "
                      f"{st.device_underflows}  input overflows {st.device_input_overflows}"
                      + (f"  ! {st.warning}" if st.warning else ""), end="", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        converter.stop()
    st = converter.stats()
    if args.json:
        print(json.dumps(st.to_dict(), indent=2))
    else:
        print()
    if args.out:
        from studio.engine.audio import files

        files.save(args.out, converter.recent_output(min(st.seconds, 30.0)), converter.rate)
    return 0


def run_voice_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from studio.engine.audio.files import AudioFileError
    from studio.engine.convert import ConversionError, build_voice, save_voice, user_voices_dir

    def progress(done: int, total: int) -> None:
        print(f"\ranalysed {done}/{total} files", end="", flush=True)

    try:
        built = build_voice(args.name, args.files, description=args.description, max_minutes=args.max_minutes, progress=progress)
        print()
        if args.embedding:
            from studio.engine.convert import speaker_similarity
            from studio.engine.convert.corpora import load_speech

            built.arrays["speaker_embedding"] = speaker_similarity.centroid(
                speaker_similarity.embed(load_speech(p, 16000), 16000) for p in args.files[:20]
            )
    except (ConversionError, AudioFileError) as exc:
        raise CliError(str(exc)) from exc
    out = Path(args.out) if args.out else user_voices_dir()
    stem = out / args.name if (out.is_dir() or not args.out) else out
    path = save_voice(built, stem)
    print(f"{path}: {built.summary()}")
    return 0


def run_voice_train_content(args: argparse.Namespace) -> int:
    from studio.engine.convert import ConversionError
    from studio.engine.convert import content_train as ct
    from studio.engine.convert.content import default_output_stem, save_encoder
    from studio.engine.convert.corpora import corpus

    for flag, value in (("--recordings", args.recordings), ("--held-out", args.held_out), ("--epochs", args.epochs), ("--members", args.members)):
        if value is not None and value < 1:
            raise CliError(f"{flag} {value}: give a positive number")
    if args.threads < 1:
        raise CliError(f"--threads {args.threads}: give a positive number")
    try:
        ru = corpus("ru")
        train = ct.labelled_recordings(ru.train)[: args.recordings]
        held = ct.labelled_recordings(ru.held_out)[: args.held_out]
        if not train:
            raise CliError("festvox-ru's recordings have no label files (expected lab/ru_NNNN.lab beside wav/)")

        def progress(label: str):
            return lambda done, total: print(f"\ranalysed {done}/{total} {label} recordings", end="", flush=True)

        train_frames = ct.analyse(train, progress=progress("training"), workers=args.threads)
        print()
        held_frames = (
            ct.analyse(held, warps=(0.85, 1.0, 1.17), progress=progress("held-out"), workers=args.threads) if held else None
        )
        print()
        encoder = ct.train_content_encoder(
            train_frames, held_frames, epochs=args.epochs or ct.DEFAULT_EPOCHS, members=args.members, threads=args.threads,
            progress=print,
        )
    except ConversionError as exc:
        raise CliError(str(exc)) from exc
    encoder.record.update({
        "data": f"festvox-ru ({ru.package}): {len(train)} labelled training recordings; held out: {len(held)} of ru_0801–ru_0844",
        "licence": ru.licence,
    })
    path = save_encoder(encoder, args.out or default_output_stem())
    accuracy = encoder.record.get("held_out_accuracy")
    print(f"{path}: {len(encoder.phones)} phones, {encoder.record['members']} member(s), "
          f"{encoder.record['frames']} frames × {len(encoder.record['warps'])} warps, "
          f"{encoder.record['wall_seconds']:.0f} s" + (f"; held-out frame accuracy {accuracy}" if accuracy else ""))
    return 0


def run_voice_list(args: argparse.Namespace) -> int:
    from studio.engine.convert import list_voices

    voices = list_voices()
    if args.json:
        print(json.dumps([{"name": v.name, "path": str(v.path), "median_f0_hz": round(v.median_f0_hz, 1),
                           "description": v.description, "provenance": v.provenance} for v in voices], indent=2))
    else:
        for v in voices:
            print(f"{v.summary()}  [{v.path}]")
        if not voices:
            print("no voices; build one with `studio voice build NAME FILES…`")
    return 0


def _hz(value: float) -> float | None:
    """A median F0 for the summary: None where there was no voiced frame (NaN is not JSON)."""
    return round(value, 2) if math.isfinite(value) else None
