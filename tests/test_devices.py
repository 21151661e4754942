"""Devices through the real PulseAudio server: listing, resolving by name, helpful errors, the CLI."""

import json
import logging
import os
import subprocess
import sys

import pytest

from studio.engine.audio import devices

pytestmark = pytest.mark.sound


def run_studio(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_importing_the_studio_does_not_import_sounddevice():
    code = "import studio.engine.audio.devices, studio.engine.audio.player, studio.engine.audio.recorder, sys; " \
        "print('sounddevice' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_list_devices_under_the_server(pulse_server):
    found = devices.list_devices()
    assert found, "the private PulseAudio server should give PortAudio at least one device"
    outputs = [d for d in found if d.is_default_output]
    inputs = [d for d in found if d.is_default_input]
    assert len(outputs) == 1 and len(inputs) == 1
    d = outputs[0]
    assert d.max_output_channels >= 2 and d.hostapi == "ALSA"
    assert d.default_low_output_latency > 0 and d.default_samplerate > 0
    assert d.preferred_rate == 48000  # a sound-server device: the server's rate, not ALSA's 44100
    assert d.to_dict()["name"] == d.name
    assert d.name in d.describe()


def test_resolve_by_name_index_and_default(pulse_server, caplog):
    default = devices.resolve_device(None, "output")
    assert default.is_default_output
    by_name = devices.resolve_device(default.name, "output")
    assert by_name == default
    assert devices.resolve_device(default.name.upper(), "output") == default
    assert devices.resolve_device(default.index, "input").index == default.index
    with caplog.at_level(logging.WARNING, logger="studio.engine.audio.devices"):
        fallback = devices.resolve_device("USB headset that was unplugged", "input")
    assert fallback.is_default_input
    assert "USB headset that was unplugged" in caplog.text and "default" in caplog.text


def test_missing_device_without_fallback_says_what_to_do(pulse_server):
    with pytest.raises(devices.AudioDeviceError) as info:
        devices.resolve_device("no such device", "output", fallback=False)
    message = str(info.value)
    assert "no such device" in message and "studio devices" in message
    with pytest.raises(devices.AudioDeviceError):
        devices.resolve_device(999, "input", fallback=False)


def test_unsupported_settings_name_device_rate_channels_and_a_fix(pulse_server):
    with pytest.raises(devices.AudioDeviceError) as info:
        devices.validate_output(None, 48000, 64)
    message = str(info.value)
    default = devices.default_device("output")
    assert repr(default.name) in message and "48000 Hz" in message and "64 channel" in message
    assert f"at most {default.max_output_channels}" in message and "studio devices" in message
    with pytest.raises(devices.AudioDeviceError) as info:
        devices.validate_input(None, 1_000_000, 1)
    assert "1000000 Hz" in str(info.value) and "48000 Hz" in str(info.value)
    assert devices.validate_output(None, 48000, 2).is_default_output


def test_rescan_finds_the_devices_again(pulse_server):
    before = [d.name for d in devices.list_devices()]
    devices.rescan()
    assert [d.name for d in devices.list_devices()] == before


def test_cli_devices_text_and_json(pulse_server):
    out = run_studio("devices")
    assert out.returncode == 0, out.stderr
    assert "default" in out.stdout
    out = run_studio("devices", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert any(d["is_default_output"] for d in listed)
    assert {"index", "name", "hostapi", "max_input_channels", "default_samplerate"} <= set(listed[0])


def test_no_sound_server_means_no_devices_and_clear_errors(tmp_path):
    """Without a reachable server PortAudio sees no devices: listing works, playing says why not."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": "unix:/nonexistent/socket"}
    out = run_studio("devices", "--json", env=env)
    assert out.returncode == 0 and json.loads(out.stdout) == []
    out = run_studio("devices", env=env)
    assert out.returncode == 0 and "no audio devices found" in out.stdout
    wav = tmp_path / "x.wav"
    out = run_studio("record", str(wav), "--seconds", "1", env=env)
    assert out.returncode == 2
    assert "no audio input devices found" in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_device_exits_2_with_one_line(pulse_server, tmp_path):
    out = run_studio("record", str(tmp_path / "x.wav"), "--seconds", "1", "--device", "nonexistent mic")
    assert out.returncode == 2
    assert "nonexistent mic" in out.stderr and "studio devices" in out.stderr and "Traceback" not in out.stderr
