"""The pacing the Player and the Recorder share for reopening a dead stream, their stream settings,
and the polling wait behind their ``wait()`` (pure logic: a recording stand-in for the quit event)."""

from __future__ import annotations

import time

from studio.engine.audio.stream_loops import reopen_attempts, stream_settings, wait_while
from studio.engine.audio.streams import REOPEN_BACKOFF_S


class RecordedQuit:
    """A quit event that never blocks: records each wait's delay; ``set_after`` waits, it is set."""

    def __init__(self, set_after: int | None = None) -> None:
        self.delays: list[float] = []
        self._set_after = set_after

    def is_set(self) -> bool:
        return self._set_after is not None and len(self.delays) >= self._set_after

    def wait(self, delay: float) -> bool:
        self.delays.append(delay)
        return self.is_set()


def test_reopen_attempts_back_off_doubling_to_the_cap():
    quit_event = RecordedQuit()
    attempts = []
    for attempt in reopen_attempts(quit_event, deadline=time.monotonic() + 3600):
        attempts.append(attempt)
        if attempt == 7:
            break
    assert attempts == [1, 2, 3, 4, 5, 6, 7]
    first, cap = REOPEN_BACKOFF_S
    expected = [min(first * 2**i, cap) for i in range(6)]
    assert quit_event.delays == expected
    assert expected[-1] == cap and expected[0] == first < cap  # the cap is reached within these attempts


def test_reopen_attempts_end_when_quit_is_set_or_the_deadline_has_passed():
    assert list(reopen_attempts(RecordedQuit(set_after=0), deadline=time.monotonic() + 3600)) == []
    stopped = RecordedQuit(set_after=2)  # set during the wait after the second attempt
    assert list(reopen_attempts(stopped, deadline=time.monotonic() + 3600)) == [1, 2]
    assert len(stopped.delays) == 2
    assert list(reopen_attempts(RecordedQuit(), deadline=time.monotonic() - 1.0)) == []


def test_stream_settings_are_float32_with_the_given_values():
    def callback(*_args):
        return None

    assert stream_settings(3, 48000, 2, 512, "high", callback) == dict(
        device=3, samplerate=48000, channels=2, dtype="float32", blocksize=512, latency="high", callback=callback
    )


def test_wait_while_returns_true_once_not_busy_and_false_at_the_timeout():
    calls = []

    def busy_three_times() -> bool:
        calls.append(None)
        return len(calls) <= 3

    assert wait_while(busy_three_times, timeout=None)
    assert len(calls) == 4
    assert not wait_while(lambda: True, timeout=0.05)
    assert wait_while(lambda: False, timeout=0.0)
