"""``studio info FILE [--json]``: what an audio file holds — format, rate, channels, length, levels.

Decodes the whole file block by block (constant memory) to measure peak and RMS dBFS. A file that
cannot be read gives one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math

from studio.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe an audio file: format, rate, channels, duration, peak and RMS level",
        description="Describe an audio file (WAV, FLAC, OGG/Vorbis, Opus, MP3): format, encoding, sample "
        "rate, channels, duration, and peak and RMS level in dBFS (RMS relative to a full-scale square "
        "wave: a full-scale sine reads -3.01 dBFS).",
    )
    parser.add_argument("file", metavar="FILE", help="the audio file")
    parser.add_argument("--json", action="store_true", help="print one JSON object (levels of silence are null)")
    parser.set_defaults(handler=run_info)


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:d}:{minutes:02d}:{secs:06.3f}" if hours else f"{minutes:d}:{secs:06.3f}"


def _format_level(dbfs: float | None) -> str:
    if dbfs is None:
        return "n/a"
    return "-inf dBFS (silence)" if math.isinf(dbfs) else f"{dbfs:.2f} dBFS"


def run_info(args: argparse.Namespace) -> int:
    from studio.engine.audio.files import AudioFileError, info

    try:
        described = info(args.file)
    except AudioFileError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(described.to_dict(), indent=2))
        return 0
    rows = [
        ("file", described.path),
        ("format", described.format_name),
        ("encoding", f"{described.subtype_name} ({described.subtype})"),
        ("sample rate", f"{described.sample_rate} Hz"),
        ("channels", str(described.channels)),
        ("duration", f"{_format_duration(described.duration_s)} ({described.frames} frames)"),
        ("peak", _format_level(described.peak_dbfs)),
        ("RMS", _format_level(described.rms_dbfs)),
    ]
    if described.nonfinite_samples:
        rows.append(("damaged", f"{described.nonfinite_samples} NaN/inf samples (read as 0)"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0
