"""``studio devices``, ``studio play`` and ``studio record``: the sound devices, headless.

sounddevice/PortAudio are imported inside the handlers (``studio --help`` stays fast and PortAudio
lists devices only when asked). Device and file problems exit with status 2 and one line saying what
to do; Ctrl+C stops playback or ends a recording cleanly (the file is finalised).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from studio.cli import CliError

PROGRESS_PERIOD_S = 0.25


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list audio input and output devices")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=cmd_devices)

    p = subparsers.add_parser("play", help="play an audio file on an output device")
    p.add_argument("file", help="audio file (WAV, FLAC, OGG, MP3 …)")
    p.add_argument("--device", "-d", help="output device name or index (default: the system default)")
    p.add_argument("--rate", type=int, help="device sample rate in Hz (default: the device's)")
    p.add_argument("--volume", type=float, default=1.0, help="linear gain 0 … 4 (default 1)")
    p.add_argument("--start", type=float, default=0.0, help="start at this many seconds")
    p.set_defaults(handler=cmd_play)

    p = subparsers.add_parser("record", help="record from an input device into a file")
    p.add_argument("out", help="output file (.wav recommended; .flac/.ogg are converted when done)")
    p.add_argument("--seconds", "-s", type=float, help="stop after this many seconds (default: until Ctrl+C)")
    p.add_argument("--device", "-d", help="input device name or index (default: the system default)")
    p.add_argument("--rate", "-r", type=int, help="sample rate in Hz (default: the device's)")
    p.add_argument("--channels", "-c", type=int, default=1, help="channels (default 1)")
    p.add_argument("--subtype", default="PCM_16", help="sample format, e.g. PCM_16, PCM_24, FLOAT")
    p.set_defaults(handler=cmd_record)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes):02d}:{secs:06.3f}"


class _Progress:
    """One status line: rewritten in place on a terminal, one line per update otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()

    def show(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r" + text + "\x1b[K")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def done(self) -> None:
        if self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()


def cmd_devices(args: argparse.Namespace) -> int:
    from studio.engine.audio import devices

    try:
        found = devices.list_devices()
    except devices.AudioDeviceError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps([d.to_dict() for d in found], indent=2))
        return 0
    if not found:
        print("no audio devices found (is a sound server running? is libportaudio2 installed?)")
        return 0
    print("    #  name  (host API; channels; default rate; output latency)   < default input, > default output")
    for d in found:
        print(d.describe())
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from studio.engine.audio import devices, files
    from studio.engine.audio.player import Player, PlayerState

    try:
        header = files.info(args.file, stats=False)
    except files.AudioFileError as exc:
        raise CliError(str(exc)) from exc
    if args.start < 0:
        raise CliError(f"--start must be 0 or more seconds, got {args.start:g}")
    if args.start > 0 and args.start >= header.duration_s:
        raise CliError(
            f"--start {args.start:g} s is past the end of {args.file} ({header.duration_s:.3f} s long); "
            f"give a start below {header.duration_s:.3f}"
        )
    try:
        device = devices.resolve_device(args.device, "output", fallback=False)
        player = Player(device.index, args.rate)
        player.volume = args.volume
        player.play_file(args.file)
    except (devices.AudioDeviceError, files.AudioFileError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    progress = _Progress()
    total = player.duration_s or 0.0
    print(
        f"playing {args.file} ({total:.2f} s, {player.source_sample_rate} Hz) on {player.device_name!r} "
        f"at {player.device_rate} Hz, latency {player.latency_s * 1000:.0f} ms",
        flush=True,
    )
    try:
        if args.start:
            player.seek(args.start)
        while player.state in (PlayerState.PLAYING, PlayerState.PAUSED):
            progress.show(
                f"{_clock(player.position_s)} / {_clock(total)}  underflows {player.underflows}  "
                f"{player.output_level.as_text()}"
            )
            time.sleep(PROGRESS_PERIOD_S)
    except KeyboardInterrupt:
        progress.done()
        print(f"stopped at {_clock(player.position_s)}", flush=True)
        return 130
    finally:
        error = player.last_error
        player.stop()
    progress.done()
    recovered = f"  (the device stream was reopened {player.recoveries}×)" if player.recoveries else ""
    print(f"played {_clock(player.position_s)}  underflows {player.underflows}{recovered}", flush=True)
    if error is not None:
        raise CliError(f"playback ended early: {error}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from studio.engine.audio import devices, files
    from studio.engine.audio.recorder import Recorder, RecorderState

    if args.seconds is not None and args.seconds <= 0:
        raise CliError(f"--seconds must be positive, got {args.seconds}")
    try:
        device = devices.resolve_device(args.device, "input", fallback=False)
        recorder = Recorder(
            args.out,
            device.index,
            args.rate,
            args.channels,
            args.subtype,
            max_seconds=args.seconds,
        )
        recorder.start()
    except (devices.AudioDeviceError, files.AudioFileError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    progress = _Progress()
    limit = "until Ctrl+C" if args.seconds is None else f"for {args.seconds:g} s"
    print(
        f"recording {args.out} from {device.name!r} at {recorder.sample_rate} Hz, {args.channels} ch, {limit}",
        flush=True,
    )
    interrupted = False
    try:
        while recorder.state == RecorderState.RECORDING:
            progress.show(
                f"{_clock(recorder.elapsed_s)}  frames {recorder.frames_recorded}  overflows {recorder.overflows}  "
                f"{recorder.level.as_text()}"
            )
            time.sleep(PROGRESS_PERIOD_S)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        path = recorder.stop()
    progress.done()
    gaps = recorder.gaps
    print(
        f"saved {path}: {recorder.frames_recorded / recorder.sample_rate:.2f} s, overflows {recorder.overflows}"
        + (f", {len(gaps)} gap(s) of lost audio written as silence" if gaps else "")
        + ("  (stopped by Ctrl+C)" if interrupted else ""),
        flush=True,
    )
    for gap in gaps:
        print(f"  gap at {_clock(gap.start_s)}: {gap.duration_s:.3f} s ({gap.reason})", flush=True)
    if recorder.last_error is not None:
        raise CliError(f"recording ended early: {recorder.last_error}")
    return 0
