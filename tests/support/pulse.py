"""The test session's sound server: :mod:`studio.engine.audio.private_pulse` in its loopback layout.

``test_sink`` (48 kHz stereo) is the default output and its monitor the default input, so what a test
plays comes back when it records (a loopback). ``mic_sink`` is a second sink for live input→output
tests: play a signal into it with ``paplay -d mic_sink`` and point the default source at
``mic_sink.monitor`` (``use_sources``) so the converter's output (``test_sink``) does not feed back into
its input. A ``parec`` reader runs on ``test_sink.monitor`` (tests that use ``mic_sink`` start their
own reader on its monitor).

The server must run before ``sounddevice`` is imported (PortAudio lists devices once). A fresh server
holds back every stream for its first ~2 s; ``start()`` returns at once and ``wait_warm()`` /
``wait_until_warm()`` wait until its start-up silence has drained (see the engine module's doc for the
measurements).
"""

from __future__ import annotations

import logging

from studio.engine.audio.private_pulse import (
    LOOPBACK_SOURCE,
    SINK_RATE,
    WARM_UP_S,
    PrivatePulse,
    missing_tools,
)

log = logging.getLogger(__name__)

__all__ = ["SINK_RATE", "WARM_UP_S", "PulseServer", "start", "wait_until_warm"]

PulseServer = PrivatePulse
_latest: PulseServer | None = None  # the server start() made last in this process


def start() -> PulseServer | None:
    """Start the server and point this process's environment at it; None when PulseAudio is absent."""
    global _latest
    missing = missing_tools()
    if missing:
        log.warning("%s not installed: sound tests will be skipped (run scripts/setup)", ", ".join(missing))
        return None
    _latest = PrivatePulse.start(default_source=LOOPBACK_SOURCE, readers=(LOOPBACK_SOURCE,))
    return _latest


def wait_until_warm(timeout: float = 15.0) -> bool:
    """``wait_warm`` on the server this process started last (True when there is none)."""
    return True if _latest is None else _latest.wait_warm(timeout)
