"""``studio info`` through a real subprocess: text and JSON output, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from studio.engine.audio import files


def run_studio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=120)


def test_info_prints_format_rate_channels_duration_and_levels(tmp_path):
    t = np.arange(44100) / 44100
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 550 * t)], 1).astype(np.float32)
    path = tmp_path / "take.flac"
    files.save(path, audio, 44100, subtype="PCM_24")
    out = run_studio("info", str(path))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "FLAC" in text and "PCM_24" in text and "44100 Hz" in text
    assert [line.split() for line in text.splitlines() if line.startswith("channels")] == [["channels", "2"]]
    assert "0:01.000" in text and "44100 frames" in text
    assert "-6.02 dBFS" in text  # peak of a 0.5 sine
    assert "-9.03 dBFS" in text  # its RMS


def test_info_json(tmp_path):
    path = tmp_path / "quiet.wav"
    files.save(path, np.zeros(8000, np.float32), 16000)
    out = run_studio("info", str(path), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["format"] == "WAV" and data["subtype"] == "PCM_16"
    assert (data["sample_rate"], data["channels"], data["frames"]) == (16000, 1, 8000)
    assert data["duration_s"] == 0.5
    assert data["peak_dbfs"] is None and data["rms_dbfs"] is None  # silence: -inf is not JSON


def test_bad_files_give_one_line_and_status_2(tmp_path):
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all\n" * 10)
    truncated = tmp_path / "cut.wav"
    files.save(truncated, np.full(16000, 0.1, np.float32), 16000)
    truncated.write_bytes(truncated.read_bytes()[:10000])
    for path, expected in [
        (tmp_path / "missing.wav", "does not exist"),
        (text_file, "not an audio file"),
        (truncated, "cut short"),
    ]:
        out = run_studio("info", str(path))
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("studio info: ") and str(path) in lines[0] and expected in lines[0]
        assert out.stdout == ""
