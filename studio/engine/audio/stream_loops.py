"""The loops and settings the player and the recorder share around their PortAudio stream.

``stream_settings`` builds the keyword arguments both open their stream with (at start and on every
reopen); ``reopen_attempts`` paces the attempts to reopen a dead stream (backoff from
``REOPEN_BACKOFF_S``, bounded by a deadline, cut short by the owner's quit event); ``wait_while``
is the polling wait behind ``Player.wait`` and ``Recorder.wait``. Nothing here runs in an audio
callback; the limits themselves live in streams.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from studio.engine.audio.streams import REOPEN_BACKOFF_S

WAIT_POLL_S = 0.02  # how often ``wait_while`` looks again


def stream_settings(
    device_index: int, sample_rate: int, channels: int, blocksize: int, latency: str | float, callback: Callable
) -> dict[str, Any]:
    """Keyword arguments for ``sd.InputStream``/``sd.OutputStream``: float32 frames of ``channels``
    channels at ``sample_rate`` Hz on device ``device_index``, ``blocksize`` frames per ``callback``
    (0: PortAudio chooses), ``latency`` in seconds or PortAudio's "low"/"high"."""
    return dict(
        device=device_index,
        samplerate=sample_rate,
        channels=channels,
        dtype="float32",
        blocksize=blocksize,
        latency=latency,
        callback=callback,
    )


def reopen_attempts(quit_event: threading.Event, deadline: float) -> Iterator[int]:
    """Yield attempt numbers 1, 2, … for reopening a dead stream, on the calling (watcher) thread.

    Each attempt comes only while ``quit_event`` is clear and ``time.monotonic()`` is before
    ``deadline``; between attempts it waits (on ``quit_event``, so a stop ends the wait at once)
    ``REOPEN_BACKOFF_S[0]`` seconds, doubling up to ``REOPEN_BACKOFF_S[1]``. The caller leaves the
    loop when an attempt succeeds; when the loop ends by itself, ``quit_event`` tells a stop from a
    deadline that passed.
    """
    delay, attempt = REOPEN_BACKOFF_S[0], 0
    while not quit_event.is_set() and time.monotonic() < deadline:
        attempt += 1
        yield attempt
        if quit_event.wait(delay):
            return
        delay = min(2 * delay, REOPEN_BACKOFF_S[1])


def wait_while(busy: Callable[[], bool], timeout: float | None = None) -> bool:
    """Block the calling thread until ``busy()`` is False, polling every ``WAIT_POLL_S`` seconds.

    True when that happened within ``timeout`` seconds (None: wait as long as it takes), else False.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while busy():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_S)
    return True
