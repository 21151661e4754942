"""Audio devices through sounddevice/PortAudio: listing, choosing by name, checking settings.

``sounddevice`` is imported lazily (``sd()``): PortAudio enumerates devices once when it initialises,
so importing it at studio import time would freeze the list before a sound server is up. ``rescan()``
re-initialises PortAudio to pick up devices that appeared or vanished since.

Devices are remembered by NAME (indices change when devices come and go). ``resolve_device`` turns a
saved name, an index or None into a ``DeviceInfo``; a name that is gone falls back to the system
default with a logged warning (or raises, with ``fallback=False``, as the CLI wants).

Rates: PortAudio's ALSA ``pulse``/``default`` devices report 44100 Hz as their default rate, but the
sound server usually mixes at 48000 Hz and streams at other rates were measured to abort now and then
(see TESTING.md). ``preferred_rate`` therefore answers 48000 for those plugin devices and the reported
default rate for real hardware devices.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["output", "input"]
DeviceSpec = str | int | None

DEFAULT_SAMPLE_RATE = 48000
# ALSA plugin devices that forward to a sound server; their reported default rate is not the server's.
SERVER_PLUGIN_NAMES = ("default", "pulse", "pipewire", "sysdefault")


class AudioDeviceError(Exception):
    """A device is missing, cannot be opened, or does not support the requested settings."""


def sd() -> ModuleType:
    """The ``sounddevice`` module, imported on first use; AudioDeviceError when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio shared library is not installed
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}); install it (Debian: apt-get install libportaudio2)"
        ) from exc
    return sounddevice


def rescan() -> None:
    """Re-enumerate devices (PortAudio lists them once at initialisation).

    Do not call while a stream is open: re-initialising PortAudio invalidates open streams.
    """
    module = sd()
    module._terminate()
    module._initialize()
    log.info("audio devices rescanned: %d found", len(list_devices()))


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device. Latencies are in seconds, rates in Hz."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_low_input_latency: float
    default_high_input_latency: float
    default_low_output_latency: float
    default_high_output_latency: float
    is_default_input: bool
    is_default_output: bool

    @property
    def preferred_rate(self) -> int:
        """The rate to open streams at: 48000 for sound-server plugin devices, else the device default."""
        if self.name.lower() in SERVER_PLUGIN_NAMES or self.name.lower().startswith(("pulse", "pipewire")):
            return DEFAULT_SAMPLE_RATE
        return int(round(self.default_samplerate)) or DEFAULT_SAMPLE_RATE

    def has(self, kind: Kind) -> bool:
        """Whether the device has channels in that direction."""
        return (self.max_output_channels if kind == "output" else self.max_input_channels) > 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["preferred_rate"] = self.preferred_rate
        return data

    def describe(self) -> str:
        """One line for listings: index, name, host API, channels, default rate, default flags."""
        flags = ("<" if self.is_default_input else " ") + (">" if self.is_default_output else " ")
        return (
            f"{flags} {self.index:3d}  {self.name}  ({self.hostapi}; in {self.max_input_channels}, "
            f"out {self.max_output_channels}; {self.default_samplerate:g} Hz; "
            f"latency out {self.default_low_output_latency * 1000:.0f}–{self.default_high_output_latency * 1000:.0f} ms)"
        )


def _default_index(module: ModuleType, kind: Kind) -> int:
    """Index of the default ``kind`` device, -1 when there is none."""
    try:
        return int(module.query_devices(kind=kind)["index"])
    except (module.PortAudioError, ValueError, KeyError, TypeError):
        return -1


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio knows (possibly empty). Never raises for 'no devices'."""
    module = sd()
    try:
        raw = module.query_devices()
        hostapis = module.query_hostapis()
    except module.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
    default_in, default_out = _default_index(module, "input"), _default_index(module, "output")
    devices = []
    for d in raw:
        devices.append(
            DeviceInfo(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=str(hostapis[d["hostapi"]]["name"]),
                max_input_channels=int(d["max_input_channels"]),
                max_output_channels=int(d["max_output_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                default_low_input_latency=float(d["default_low_input_latency"]),
                default_high_input_latency=float(d["default_high_input_latency"]),
                default_low_output_latency=float(d["default_low_output_latency"]),
                default_high_output_latency=float(d["default_high_output_latency"]),
                is_default_input=int(d["index"]) == default_in,
                is_default_output=int(d["index"]) == default_out,
            )
        )
    return devices


def default_device(kind: Kind = "output") -> DeviceInfo:
    """The system default device for ``kind``; AudioDeviceError when there is none."""
    devices = [d for d in list_devices() if d.has(kind)]
    if not devices:
        raise AudioDeviceError(
            f"no audio {kind} devices found; is a sound server (PulseAudio/PipeWire) running? "
            "Connect a device, then run `studio devices` to list what PortAudio sees"
        )
    for d in devices:
        if (d.is_default_output if kind == "output" else d.is_default_input):
            return d
    return devices[0]


def _find(devices: list[DeviceInfo], spec: str | int, kind: Kind) -> DeviceInfo | None:
    usable = [d for d in devices if d.has(kind)]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        return next((d for d in usable if d.index == index), None)
    exact = [d for d in usable if d.name == spec]
    if exact:
        return exact[0]
    folded = spec.strip().lower()
    exact_ci = [d for d in usable if d.name.lower() == folded]
    if exact_ci:
        return exact_ci[0]
    partial = [d for d in usable if folded in d.name.lower()]
    return partial[0] if len(partial) == 1 else None


def resolve_device(spec: DeviceSpec = None, kind: Kind = "output", *, fallback: bool = True) -> DeviceInfo:
    """Turn a saved device name, an index or None (the default) into a ``DeviceInfo``.

    Names match exactly, then case-insensitively, then as a unique substring. A device that is not
    found falls back to the default ``kind`` device with a warning in the log, or raises
    AudioDeviceError when ``fallback`` is False. No devices at all always raises AudioDeviceError.
    """
    if kind not in ("output", "input"):
        raise ValueError(f"kind must be 'output' or 'input', got {kind!r}")
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "default")):
        named_default = [d for d in list_devices() if d.name == "default" and d.has(kind)]
        if isinstance(spec, str) and spec.strip() == "default" and named_default:
            return named_default[0]
        return default_device(kind)
    devices = list_devices()
    found = _find(devices, spec, kind)
    if found is not None:
        return found
    names = ", ".join(repr(d.name) for d in devices if d.has(kind)) or "none"
    if not fallback:
        raise AudioDeviceError(
            f"no audio {kind} device matches {spec!r} (available: {names}); run `studio devices` to list them"
        )
    chosen = default_device(kind)
    log.warning("audio %s device %r not found; using the default %r instead", kind, spec, chosen.name)
    return chosen


def _validate(device: DeviceSpec | DeviceInfo, sample_rate: float | None, channels: int, kind: Kind) -> DeviceInfo:
    info = device if isinstance(device, DeviceInfo) else resolve_device(device, kind, fallback=False)
    rate = info.preferred_rate if sample_rate is None else sample_rate
    max_channels = info.max_output_channels if kind == "output" else info.max_input_channels
    module = sd()
    check = module.check_output_settings if kind == "output" else module.check_input_settings
    try:
        check(device=info.index, samplerate=rate, channels=channels, dtype="float32")
    except (module.PortAudioError, ValueError) as exc:
        hint = []
        if channels > max_channels:
            hint.append(f"use at most {max_channels} channel(s)")
        if rate != info.preferred_rate:
            hint.append(f"try the device's rate {info.preferred_rate} Hz")
        hint.append("run `studio devices` to see what each device supports")
        raise AudioDeviceError(
            f"{kind} device {info.name!r} (#{info.index}) cannot {'play' if kind == 'output' else 'record'} "
            f"{channels} channel(s) at {rate:.10g} Hz: {exc}; " + "; ".join(hint)
        ) from exc
    return info


def validate_output(device: DeviceSpec | DeviceInfo, sample_rate: float | None = None, channels: int = 2) -> DeviceInfo:
    """Check that ``device`` can play float32 at ``sample_rate`` Hz (None: its preferred rate) with
    ``channels`` channels; return its ``DeviceInfo`` or raise AudioDeviceError saying what to try."""
    return _validate(device, sample_rate, channels, "output")


def validate_input(device: DeviceSpec | DeviceInfo, sample_rate: float | None = None, channels: int = 1) -> DeviceInfo:
    """Check that ``device`` can record float32 at ``sample_rate`` Hz (None: its preferred rate) with
    ``channels`` channels; return its ``DeviceInfo`` or raise AudioDeviceError saying what to try."""
    return _validate(device, sample_rate, channels, "input")
