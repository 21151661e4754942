"""Test session set-up: a private PulseAudio server and Qt's offscreen platform, stopped afterwards."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
# Small matrix work in numpy gets far slower with several BLAS threads on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from support import pulse  # noqa: E402

_server: pulse.PulseServer | None = None
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")


def pytest_configure(config: pytest.Config) -> None:
    global _server
    if "sounddevice" in sys.modules:
        raise RuntimeError("sounddevice was imported before the sound server started")
    _server = pulse.start()
    os.makedirs(ARTIFACTS, exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()


@pytest.fixture(scope="session")
def pulse_server() -> pulse.PulseServer:
    """The running sound server; tests that need it are skipped only where PulseAudio is not installed."""
    if _server is None:
        if os.environ.get("CI"):
            pytest.fail("PulseAudio is not installed, yet CI must test real audio (scripts/setup installs it)")
        pytest.skip("PulseAudio is not installed (scripts/setup installs it)")
    _server.wait_warm()  # a fresh server holds every stream back for its first ~2 s
    return _server


@pytest.fixture(scope="session")
def artifacts_dir() -> str:
    """Where tests leave screenshots and other things a person may want to look at."""
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _few_threads():
    """One torch thread (tiny models; the suite shares 2 cores with the sound server) and a fixed seed."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
