"""``studio models``, ``studio generate`` and ``studio vocode``: the model catalogue and inference, headless.

Generation streams block by block (the same ``model.stream`` the studio plays from); progress and the
speed in × real time go to stderr, the result line to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from studio.cli import CliError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (checked for availability), else ``CliError``."""
    if not _DEVICE.match(text):
        raise CliError(f"--device {text}: use cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError(f"--device {text}: no CUDA device is available here; use --device cpu")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list bundled and user models (and voices)", description="List the "
                              "models the studio finds (user models folder first, then the bundled ones) with their "
                              "cards, and the voices that conversion targets (`studio convert --to NAME`).")
    p.add_argument("--json", action="store_true", help="print the entries and their full cards as JSON")
    p.set_defaults(handler=run_models)

    p = subparsers.add_parser(
        "generate", help="generate audio with a model",
        description="Generate audio. Unconditioned models generate freely; mel-conditioned ones need --mel-from.",
    )
    p.add_argument("--model", required=True, help="model name (see `studio models`) or checkpoint path")
    p.add_argument("--seconds", type=float, required=True, help="length to generate")
    p.add_argument("--out", required=True, help="output audio file (.wav, .flac, .ogg, .opus, .mp3)")
    p.add_argument("--mel-from", metavar="FILE", help="conditioning: an audio file, or a .npy mel [n_mels, frames]")
    p.add_argument("--speaker", metavar="NAME|ID",
                   help="multi-speaker models: a speaker name from the model card (or its id); default the first")
    _add_sampling_args(p)
    p.set_defaults(handler=run_generate)

    p = subparsers.add_parser(
        "vocode", help="resynthesize an audio file through a vocoder",
        description="Compute the mel of IN with the model's feature profile and turn it back into audio with the model.",
    )
    p.add_argument("input", metavar="IN", help="input audio file")
    p.add_argument("--model", required=True, help="model name (see `studio models`) or checkpoint path")
    p.add_argument("--out", required=True, help="output audio file")
    _add_sampling_args(p)
    p.set_defaults(handler=run_vocode)


MAX_SECONDS = 3600.0  # one command makes at most an hour of audio (it is held in memory until saved)


def _finite_non_negative(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number >= 0, got {text}")
        return value

    return parse


def projection_arg(text: str) -> dict:
    """``--projection N|off`` as request options: ``{PROJECTION_OPTION: N}`` or ``{...: None}`` (argparse
    type; the flag's absence leaves the model's own setting)."""
    from studio.engine.audio.projection import MAX_ITERATIONS, check_iterations
    from studio.engine.models.generation_settings import PROJECTION_OPTION

    if text.strip().lower() == "off":
        return {PROJECTION_OPTION: None}
    try:
        passes = int(text)
        check_iterations(passes)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give 'off' or a number of passes in 0..{MAX_ITERATIONS}, got {text!r}") from None
    return {PROJECTION_OPTION: passes}


PROJECTION_HELP = ("spectral projection of a vocoder's output (its mel brought to the input mel band by band, "
                   "keeping its phase): N passes after the first (0 = one pass), or 'off' (default: the model's own setting)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same audio)")
    p.add_argument("--temperature", type=_finite_non_negative("--temperature"), default=1.0,
                   help="sampling temperature of autoregressive models (default 1 = the model's own calibrated setting; 0 = most likely sample)")
    p.add_argument("--sigma", type=_finite_non_negative("--sigma"), default=0.6,
                   help="latent standard deviation of flow models (default 0.6)")
    p.add_argument("--projection", type=projection_arg, default={}, metavar="N|off", help=PROJECTION_HELP)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


# -- studio models ---------------------------------------------------------------------------------------
def _metric_text(metrics: dict[str, Any]) -> str:
    """The scalar metrics as ``name value`` pairs (nested tables and lists are in ``--json``)."""
    parts = []
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


def _summary(card: Any) -> dict[str, Any]:
    return {
        "family": card.family,
        "rate": card.sample_rate,
        "profile": card.profile.name,
        "conditioning": card.conditioning,
        "params": card.parameters,
        "receptive_field": card.receptive_field,
        "steps": card.training.get("steps"),
        "metrics": _metric_text(card.metrics),
    }


def _human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _voice_rows() -> list[dict[str, Any]]:
    """The voices (user first, then bundled) as plain dicts; broken voice files are skipped with a warning."""
    from studio.engine.convert.voice import is_bundled, list_voices

    return [
        {"name": v.name, "path": str(v.path), "bundled": is_bundled(v), "median_f0_hz": round(v.median_f0_hz, 1),
         "speech_minutes": v.speech_minutes, "description": v.description}
        for v in list_voices()
    ]


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def run_models(args: argparse.Namespace) -> int:
    from studio.engine.catalog import bundled_models_dir, scan_models, user_models_dir

    scan = scan_models()
    voices = _voice_rows()
    if args.json:
        print(json.dumps(
            {
                "user_dir": str(user_models_dir()),
                "bundled_dir": str(bundled_models_dir()) if bundled_models_dir() else None,
                "models": [
                    {"name": e.name, "path": str(e.path), "bundled": e.bundled, "card": e.card.to_dict()}
                    for e in scan.entries
                ],
                "broken": [{"path": str(b.path), "reason": b.reason} for b in scan.broken],
                "voices": voices,
            },
            indent=2,
        ))
        return 0
    if not scan.entries:
        print(f"no models yet (user folder: {user_models_dir()}); train one with `studio train`")
    else:
        header = ("NAME", "SOURCE", "FAMILY", "RATE", "PROFILE", "COND", "PARAMS", "RF", "STEPS", "METRICS")
        rows = [header]
        for e in scan.entries:
            s = _summary(e.card)
            rows.append((
                e.name, e.source, s["family"], str(s["rate"]), s["profile"], s["conditioning"],
                _human_count(s["params"]), str(s["receptive_field"]), str(s["steps"] or "—"), s["metrics"] or "—",
            ))
        _print_table(rows)
    if voices:
        print("\nvoices (conversion targets: `studio convert IN --to NAME`, the Convert panel)")
        _print_table([("NAME", "SOURCE", "MEDIAN F0", "SPEECH", "DESCRIPTION")] + [
            (v["name"], "bundled" if v["bundled"] else "user", f"{v['median_f0_hz']:.0f} Hz",
             f"{v['speech_minutes']:.1f} min" if v["speech_minutes"] is not None else "—", v["description"] or "—")
            for v in voices
        ])
    for b in scan.broken:
        print(f"skipped {b.path}: {b.reason}", file=sys.stderr)
    return 0


# -- shared by generate, vocode (and eval) --------------------------------------------------------------
def load_model_arg(name: str, device: str):
    """The model ``--model`` names: a catalogue name, a checkpoint path, or a PyTorch pickle with a
    studio card next to it (tensors only, never code), on ``device``; ``CliError`` when none loads."""
    from studio.engine.catalog import ModelNotFoundError, find_model
    from studio.engine.checkpoints import PICKLE_SUFFIXES, CheckpointError, load_model

    try:
        if Path(name).suffix in PICKLE_SUFFIXES and Path(name).expanduser().is_file():
            # A PyTorch pickle with a studio card next to it: read tensors only, never code.
            return load_model(name, device=device)
        entry = find_model(name)
        return load_model(entry.path, device=device)
    except (ModelNotFoundError, CheckpointError) as exc:
        raise CliError(str(exc)) from None


def _read_audio(path: str, sample_rate: int):
    from studio.engine.audio.files import AudioFileError, load

    try:
        audio, _ = load(path, sample_rate=sample_rate, mono=True)
    except AudioFileError as exc:
        raise CliError(str(exc)) from None
    return audio


def _mel_of_audio(audio, profile):
    from studio.engine.audio.features import compute_mel

    return compute_mel(audio, profile)


def _mel_from(path: str, model) -> Any:
    """A mel [n_mels, frames] for ``model``: from a .npy file, or computed from an audio file."""
    import numpy as np

    if Path(path).suffix.lower() == ".npy":
        try:
            mel = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CliError(f"{path}: not a readable .npy array ({exc})") from None
        if mel.ndim != 2 or mel.shape[0] != model.profile.n_mels:
            raise CliError(
                f"{path}: mel must be [n_mels={model.profile.n_mels}, frames] for this model, got shape {mel.shape}"
            )
        return mel.astype(np.float32)
    return _mel_of_audio(_read_audio(path, model.sample_rate), model.profile)


def request_seconds(request, model) -> float:
    """Seconds ``request`` asks ``model`` for (the mel's length caps it); CliError when nothing."""
    try:
        return model.resolve_length(request) / model.sample_rate
    except ValueError as exc:
        raise CliError(str(exc)) from None


class _Meter:
    """Progress on stderr while a model streams: a ``\\r`` line on a terminal, nothing otherwise."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rt = done / self.sample_rate / elapsed
        sys.stderr.write(f"\r{done / self.sample_rate:6.2f} / {total / self.sample_rate:.2f} s  {rt:5.2f}× real time\x1b[K")
        sys.stderr.flush()

    def finish(self, samples: int) -> str:
        if self.tty:
            sys.stderr.write("\n")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        seconds = samples / self.sample_rate
        return f"{seconds:.2f} s of audio in {elapsed:.2f} s ({seconds / elapsed:.2f}× real time)"


@contextlib.contextmanager
def _cancel_on_ctrl_c(token) -> Iterator[None]:
    """While active, the first Ctrl+C cancels ``token`` (the model stops after its current block and
    what was made is kept); a second Ctrl+C interrupts at once. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # e.g. a background job of a non-interactive shell
        yield
        return

    def on_sigint(signum, frame) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\nstopping after this block; what was made will be saved (Ctrl+C again to quit now)\n")
        sys.stderr.flush()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stream_to_file(model, request, out: str) -> tuple[str, bool]:
    """Stream ``request`` through ``model`` and save the audio to ``out``: (summary, was it cut short).

    Ctrl+C stops generation between blocks and saves the part already made; with nothing made yet
    it raises ``KeyboardInterrupt`` (exit status 130, no file written).
    """
    import numpy as np

    from studio.engine.audio.files import AudioFileError, save
    from studio.engine.models.base import CancelToken

    meter = _Meter(model.sample_rate)
    request.progress = meter
    request.cancel = token = CancelToken()
    blocks: list[np.ndarray] = []
    with _cancel_on_ctrl_c(token):
        try:
            for block in model.stream(request):
                blocks.append(block)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if token.cancelled and audio.shape[0] == 0:
        raise KeyboardInterrupt
    summary = meter.finish(int(audio.shape[0]))
    try:
        save(out, np.asarray(audio, dtype=np.float32), model.sample_rate)
    except (AudioFileError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return summary, token.cancelled


def _generate_to_file(args: argparse.Namespace, model, device: str, mel, num_samples: int) -> int:
    """Generate ``num_samples`` samples (``mel``: [n_mels, frames] or None) with the sampling options of
    ``args`` into ``args.out``; prints the result line and returns the exit status (130: cut short)."""
    from studio.engine.models.base import GenerateRequest

    request = GenerateRequest(
        mel=mel,
        num_samples=num_samples,
        seed=args.seed,
        temperature=args.temperature,
        sigma=args.sigma,
        device=device,
        options=dict(args.projection),
    )
    if getattr(args, "speaker", None) is not None:
        request.options["speaker"] = speaker_id(model, args.speaker)
    print(f"{model.name}: making {request_seconds(request, model):.2f} s on {device} (Ctrl+C keeps what is made)",
          file=sys.stderr, flush=True)
    summary, cut_short = _stream_to_file(model, request, args.out)
    if cut_short:
        print(f"interrupted: wrote the part made so far to {args.out}: {summary}")
        return 130
    print(f"wrote {args.out}: {summary}")
    return 0


def speaker_id(model, text: str) -> int:
    """``--speaker NAME|ID`` → the model's speaker id: a name listed in the card's ``training.speakers``
    (the training data's speaker folders), or an id in [0, n_speakers)."""
    count = int(getattr(model.config, "n_speakers", 0) or 0)
    if count == 0:
        raise CliError(f"{model.name} is not a multi-speaker model: leave out --speaker")
    names = list(model.extra_card.get("training", {}).get("speakers") or [])
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < count:
        return int(text)
    known = f"speakers: {', '.join(names)}" if names else "no speaker names on its card"
    raise CliError(f"{model.name} has no speaker '{text}' ({known}; ids 0 to {count - 1})")


def run_generate(args: argparse.Namespace) -> int:
    device = parse_device(args.device)
    if not 0 < args.seconds <= MAX_SECONDS:
        raise CliError(f"--seconds must be > 0 and at most {MAX_SECONDS:g} (one hour), got {args.seconds}")
    model = load_model_arg(args.model, device)
    mel = None
    if args.mel_from:
        mel = _mel_from(args.mel_from, model) if model.conditioned else None
        if not model.conditioned:
            print(f"note: {model.name} is unconditioned; --mel-from is ignored", file=sys.stderr)
    elif model.conditioned:
        raise CliError(
            f"{model.name} is a mel-conditioned {model.family} model: it cannot generate freely. "
            "Give --mel-from AUDIO_OR_NPY, or use `studio vocode IN --model ...`"
        )
    return _generate_to_file(args, model, device, mel, max(1, int(round(args.seconds * model.sample_rate))))


def run_vocode(args: argparse.Namespace) -> int:
    device = parse_device(args.device)
    model = load_model_arg(args.model, device)
    if not model.conditioned:
        raise CliError(f"{model.name} is an unconditioned {model.family} model: it cannot vocode; use `studio generate`")
    audio = _read_audio(args.input, model.sample_rate)
    mel = _mel_of_audio(audio, model.profile)
    if mel.shape[-1] == 0:
        raise CliError(f"{args.input}: too short to make one mel frame ({audio.shape[0]} samples)")
    return _generate_to_file(args, model, device, mel, int(audio.shape[0]))
