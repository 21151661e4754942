"""What the player and the recorder share about PortAudio streams: opening, closing, recovery limits.

Both watch their stream from a helper thread and reopen it when it dies (see player.py and
recorder.py); the limits of that recovery and the small open/close steps live here so the two keep
the same behaviour. Nothing here runs in an audio callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 3.0  # no callback for this long means the stream died quietly
DEFAULT_RECOVER_TIMEOUT_S = 5.0  # keep trying to reopen a dead stream this long before giving up
REOPEN_BACKOFF_S = (0.1, 1.0)  # first wait between reopen attempts, doubling up to the second


def check_recover_timeout(seconds: float) -> float:
    """``recover_timeout_s`` as a float; ValueError when negative (0 means: never reopen)."""
    if seconds < 0:
        raise ValueError(f"recover_timeout_s must be >= 0, got {seconds}")
    return float(seconds)


def open_started(make_stream: Callable[..., Any], **settings: Any) -> Any:
    """``make_stream(**settings)`` (e.g. ``sd.OutputStream``), started; closed again if starting fails.

    Raises what the constructor or ``start()`` raise (``sd.PortAudioError``, ``ValueError``).
    """
    stream = make_stream(**settings)
    try:
        stream.start()
    except BaseException:
        stream.close()
        raise
    return stream


def close_quietly(stream: Any, *, abort: bool = True, what: str = "stream") -> None:
    """Stop (``abort``: at once, dropping what is queued) and close ``stream``; None is ignored.

    A device that is already gone makes these calls fail: that is logged at debug level, not raised.
    """
    if stream is None:
        return
    try:
        if abort:
            stream.abort()
        else:
            stream.stop()
        stream.close()
    except Exception as exc:
        log.debug("closing the %s failed: %s", what, exc)


def latency_s(stream: Any) -> float:
    """``stream.latency`` in seconds; 0.0 for None or a stream that cannot tell (closed, device gone)."""
    try:
        return float(stream.latency) if stream is not None else 0.0
    except Exception:
        return 0.0
