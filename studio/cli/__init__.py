"""The ``studio`` command: the window when run bare, headless subcommands otherwise.

Each module in this package that defines ``register(subparsers)`` adds its subcommands; modules keep
heavy imports (torch, sounddevice) inside their handlers so that ``studio --help`` stays fast. A handler
returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from studio import __version__

log = logging.getLogger("studio")

# Before anything imports torch: OpenMP threads sleep at barriers instead of spinning. On a shared or
# small machine spinning threads steal the cores doing the work (docs/perf.md: WaveGlow with 2 threads
# ran about 2x faster with PASSIVE under load; one thread is unaffected). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class CliError(Exception):
    """A user-facing error: printed as one line without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio",
        description="Waveform Studio: neural waveform models, generated and played live. "
        "Run without a subcommand to open the window.",
    )
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def has_display() -> bool:
    """True when Qt can open a window: an X or Wayland display, or an explicit QT_QPA_PLATFORM."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def run_gui(argv: list[str]) -> int:
    if not has_display():
        print(
            "studio: no display found (DISPLAY/WAYLAND_DISPLAY unset); the window needs one. "
            "Headless: studio devices | play | record | info | models | generate | vocode | train | bench — see studio --help.",
            file=sys.stderr,
        )
        return 2
    from studio.ui.app import run_app

    return run_app(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        return run_gui([sys.argv[0]])
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"studio {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"studio {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `studio models | head`: the reader left; say nothing more, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout must not raise again
        return 141
