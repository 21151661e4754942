"""The ``studio`` command itself: help, version, and the one-line message without a display."""

import os
import subprocess
import sys


def run_studio(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_help_lists_subcommands():
    out = run_studio("--help")
    assert out.returncode == 0
    assert "studio" in out.stdout


def test_bare_studio_without_display_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = run_studio(env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "studio --help" in lines[0]
