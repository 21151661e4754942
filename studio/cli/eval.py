"""``studio eval``: copy-synthesis quality of a vocoder against Griffin-Lim on held-out speech.

    studio eval --model NAME_OR_PATH --data HELD_OUT [--json] [--limit N]
    studio eval --model griffin-lim --data HELD_OUT [--profile waveglow]

HELD_OUT is a prepared set (``studio data prepare festvox-ru --out DIR``: its ``test`` split), a folder
of audio files or one file. Every utterance's mel (the model's feature profile) goes through the model's
``stream`` and through Griffin-Lim (32 iterations) in the same run; both are scored at 16 kHz against
the original. When the ``reference`` extra is installed, the pretrained HiFi-GAN universal vocoder
(DATA.md's yardstick) resynthesises the same recordings from its own 22.05 kHz mel as a third system.
The table of per-system means goes to stdout (``--json``: the whole run as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.cli import CliError
from studio.cli.models import PROJECTION_HELP, load_model_arg, parse_device, projection_arg

GRIFFIN_LIM_NAMES = ("griffin-lim", "griffinlim", "gl")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a vocoder against Griffin-Lim by copy synthesis of held-out speech",
        description="Copy synthesis of held-out speech: the mel of each file (the model's feature profile) is "
        "resynthesised by the model (through its stream interface) and by Griffin-Lim in the same run, and "
        "both are scored at 16 kHz against the original: PESQ-wb, STOI, MCD, DNSMOS OVRL, log-spectral "
        "and multi-resolution STFT distances (the first four need: pip install -e .[eval]).",
    )
    p.add_argument("--model", required=True, help="model name (see `studio models`), checkpoint path, or "
                   "'griffin-lim' for the baseline alone")
    p.add_argument("--data", required=True, metavar="HELD_OUT",
                   help="a prepared data set (folder or manifest.json), a folder of audio files, or one file")
    p.add_argument("--split", default="test", choices=("test", "validation", "reserve", "train"),
                   help="which split of a prepared set to score (default: test)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N utterances")
    p.add_argument("--metrics", metavar="LIST", help="comma-separated: pesq,stoi,mcd,dnsmos,f0,vuv,lsd,mrstft (default: all)")
    p.add_argument("--profile", default="waveglow", metavar="PRESET",
                   help="feature profile for --model griffin-lim (default: waveglow, 22050 Hz); a model uses its own")
    p.add_argument("--gl-iterations", type=int, default=32, metavar="N", help="Griffin-Lim iterations (default 32)")
    p.add_argument("--no-griffin-lim", action="store_true", help="score the model only")
    p.add_argument("--no-original", action="store_true", help="leave out the row that scores the original itself")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the pretrained HiFi-GAN reference (scored by default when pip install -e .[reference] put it here)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the model and of Griffin-Lim's phase")
    p.add_argument("--sigma", type=float, help="latent standard deviation of flow models (default: the model's)")
    p.add_argument("--temperature", type=float, help="sampling temperature of autoregressive models")
    p.add_argument("--projection", type=projection_arg, metavar="N|off", help=PROJECTION_HELP)
    p.add_argument("--noise-projection", type=int, metavar="N",
                   help="also score white noise brought to the mel by the spectral projection (N passes after the "
                   "first): the projection's own result without a network, the control for a projected model")
    p.add_argument("--source-filter", type=projection_arg, metavar="N|off",
                   help="also score the DSP source-filter vocoder (pulses at the mel's pitch and noise through its LPC "
                   "filter), with N passes of spectral projection or 'off': the baseline for a network's excitation")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--write", metavar="DIR", help="also save every resynthesis as DIR/<system>/<utterance>.wav")
    p.add_argument("--json", action="store_true", help="print the whole run (means and per-utterance scores) as JSON")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from studio.engine.audio.features import get_profile
    from studio.engine.datasets.manifest import DatasetError
    from studio.engine.evaluation import copysynth, report, scoring
    from studio.engine.evaluation.extras import MissingExtraError

    device = parse_device(args.device)
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit {args.limit}: give a positive number of utterances")
    if args.gl_iterations < 0:
        raise CliError(f"--gl-iterations {args.gl_iterations}: give 0 or more")
    try:
        metric_names = scoring.parse_metric_names(args.metrics)
        scoring.check_available(metric_names)
    except (ValueError, MissingExtraError) as exc:
        raise CliError(str(exc)) from None

    vocoders: list = []
    if args.model.lower() in GRIFFIN_LIM_NAMES:
        try:
            profile = get_profile(args.profile)
        except ValueError as exc:
            raise CliError(f"--profile: {exc}") from None
        if args.no_griffin_lim and args.noise_projection is None and args.source_filter is None:
            raise CliError("--model griffin-lim with --no-griffin-lim leaves nothing to score")
        if args.projection is not None:
            raise CliError("--projection applies to a model's output; --model griffin-lim has none")
    else:
        model = load_model_arg(args.model, device)
        try:
            vocoders.append(copysynth.ModelVocoder(
                model, device=device, seed=args.seed, sigma=args.sigma, temperature=args.temperature,
                options=dict(args.projection or {}),
            ))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        profile = model.profile
    if args.noise_projection is not None:
        try:
            vocoders.append(copysynth.DspVocoder(profile, "noise", args.noise_projection, seed=args.seed))
        except ValueError as exc:
            raise CliError(f"--noise-projection: {exc}") from None
    if args.source_filter is not None:
        vocoders.append(copysynth.DspVocoder(profile, "source-filter", next(iter(args.source_filter.values())), seed=args.seed))
    if not args.no_griffin_lim:
        vocoders.append(copysynth.GriffinLimVocoder(profile, n_iter=args.gl_iterations, device=device, seed=args.seed))
    if not args.no_reference:
        from studio.engine.evaluation import hifigan

        if hifigan.is_available():
            try:
                vocoders.append(hifigan.HiFiGANVocoder(device=device))
            except hifigan.ReferenceUnavailable as exc:
                print(f"studio eval: the HiFi-GAN reference is left out: {exc}", file=sys.stderr)

    try:
        utterances = copysynth.find_audio(args.data, split=args.split)
    except (ValueError, FileNotFoundError, DatasetError) as exc:
        raise CliError(str(exc)) from None
    if args.limit is not None:
        utterances = utterances[: args.limit]

    from studio.engine.audio.files import AudioFileError

    try:
        result = copysynth.copy_synthesis(
            utterances, vocoders, metric_names, include_original=not args.no_original, write_dir=args.write
        )
    except AudioFileError as exc:
        raise CliError(str(exc)) from None
    result.settings.update({
        "model": args.model,
        "data": str(args.data),
        "split": args.split,
        "gl_iterations": None if args.no_griffin_lim else args.gl_iterations,
        "seed": args.seed,
        "device": device,
    })
    if args.json:
        json.dump(report.to_json(result), sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(report.format_table(result))
    return 0
