"""``studio data prepare festvox-ru|music --out DIR``: real training data that installs offline.

Nothing is installed by these commands: a missing Debian or Python package is named with the command
that installs it (``scripts/setup-data`` installs all of them). The result is a folder of FLAC files and
``manifest.json`` with a fixed held-out split, small enough (default cap 56 MiB) to carry to a GPU machine.
"""

from __future__ import annotations

import argparse
import sys

from studio.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare training data (festvox-ru speech, rendered music)",
                                 description="Prepare training and held-out data from packages that install offline.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prepare = actions.add_parser("prepare", help="prepare a data set into a folder",
                                 description="Prepare a data set: FLAC files + manifest.json with a fixed held-out split.")
    sets = prepare.add_subparsers(dest="dataset", metavar="SET", required=True)

    p = sets.add_parser("festvox-ru", help="one male Russian speaker, 620 utterances (Debian festvox-ru)",
                        description="Trim, set loudness and write festvox-ru as FLAC. Held out: ru_0801–ru_0844 "
                        "(test: the 6 utterances of the published baselines).")
    p.add_argument("--out", required=True, metavar="DIR", help="an empty or new folder (or an earlier prepared set)")
    p.add_argument("--rate", type=int, default=16000, help="output sample rate in Hz (default 16000, the source rate)")
    p.add_argument("--source", metavar="DIR", help="the voice folder (default: where Debian installs it)")
    _add_size_args(p)
    p.add_argument("--max-train-minutes", type=float, metavar="MIN", help="also stop adding training speech past this")
    p.set_defaults(handler=run_prepare_festvox)

    p = sets.add_parser("music", help="music21 corpus (Bach) rendered with fluidsynth + a GM soundfont",
                        description="Render corpus scores to MIDI and then audio. Held out: every 10th piece "
                        "(test) and the 5th of each ten (validation).")
    p.add_argument("--out", required=True, metavar="DIR", help="an empty or new folder (or an earlier prepared set)")
    p.add_argument("--minutes", type=float, default=20.0, help="how much music to render (default 20)")
    p.add_argument("--rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    p.add_argument("--programs", default="0", metavar="LIST",
                   help="General MIDI programs, cycled piece by piece (default 0 = piano; e.g. 0,19,48)")
    p.add_argument("--soundfont", metavar="SF2", help="soundfont file (default: TimGM6mb, else FluidR3_GM)")
    p.add_argument("--composer", default="bach", help="music21 corpus composer (default bach)")
    _add_size_args(p)
    p.set_defaults(handler=run_prepare_music)


def _add_size_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-mib", type=float, default=56.0, metavar="MIB",
                   help="cap on the set's size (default 56; 0 = no cap); held-out items always go in")
    p.add_argument("--bits", type=int, default=14, choices=range(8, 17), metavar="{8..16}",
                   help="sample resolution kept (default 14: smaller FLAC, noise far below the recordings'; 16 = exact)")


def _check_rate(rate: int) -> int:
    if not 4000 <= rate <= 96000:
        raise CliError(f"--rate {rate}: give a rate between 4000 and 96000 Hz")
    return rate


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{text}", end="", file=sys.stderr, flush=True)


def _finish(report) -> int:
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print("\n".join(report.lines()))
    return 0


def run_prepare_festvox(args: argparse.Namespace) -> int:
    from studio.engine.audio.files import AudioFileError
    from studio.engine.datasets.festvox import prepare_festvox_ru
    from studio.engine.datasets.manifest import DatasetError

    try:
        report = prepare_festvox_ru(
            args.out, rate=_check_rate(args.rate), budget_mib=args.budget_mib or None, bits=args.bits,
            source=args.source, max_train_minutes=args.max_train_minutes,
            progress=lambda done, total: _progress(f"festvox-ru: {done}/{total} files"),
        )
    except (DatasetError, AudioFileError, OSError) as exc:
        raise CliError(str(exc)) from None
    return _finish(report)


def run_prepare_music(args: argparse.Namespace) -> int:
    from studio.engine.datasets.manifest import DatasetError
    from studio.engine.datasets.music import prepare_music

    try:
        programs = [int(x) for x in args.programs.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--programs {args.programs}: give comma-separated numbers 0–127") from None
    try:
        report = prepare_music(
            args.out, minutes=args.minutes, rate=_check_rate(args.rate), programs=programs,
            soundfont=args.soundfont, budget_mib=args.budget_mib or None, bits=args.bits, composer=args.composer,
            progress=lambda n, seconds: _progress(f"music: {n} pieces, {seconds / 60:.1f} min"),
        )
    except (DatasetError, ValueError, RuntimeError, OSError) as exc:
        raise CliError(str(exc)) from None
    return _finish(report)
