"""What the Player and Recorder tests share: polling for a condition, and the ``player`` fixture (a
Player on the warmed-up default output of the session's private sound server, stopped afterwards).

A test module takes the fixture with ``player = live_audio.player``."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from support.audio import warm_up_output


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, period: float = 0.01) -> bool:
    """Poll ``predicate`` every ``period`` seconds; True as soon as it holds, False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(period)
    return True


@pytest.fixture
def player(pulse_server):
    """A ``Player`` on the default output, after ``warm_up_output``; stopped after the test."""
    from studio.engine.audio.player import Player

    warm_up_output()
    p = Player()
    yield p
    p.stop()
