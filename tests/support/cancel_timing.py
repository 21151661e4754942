"""Timing a cancel: run a generation on a worker thread, cancel it part-way, and measure how long it
took to end. Shared by the model families' "cancel lands within 200 ms" tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

END_WAIT_S = 5.0  # how long the test thread waits for the cancelled run to end


def cancel_mid_run(run: Callable[[], Any], token: Any, after_s: float) -> tuple[Any, float]:
    """Call ``run()`` on a daemon thread; ``after_s`` seconds later, with the run still going
    (asserted), ``token.cancel()``. Asserts the run ends within ``END_WAIT_S`` and re-raises what it
    raised. Returns ``(what run returned, seconds from the cancel until the test thread saw the end)``.

    The seconds are measured on the test thread, so they include waking it: a bound on the run's own
    cancel latency, never less than it.
    """
    ended = threading.Event()
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # re-raised on the test thread below
            outcome["error"] = exc
        finally:
            ended.set()

    thread = threading.Thread(target=worker, name="cancel-timing", daemon=True)
    thread.start()
    time.sleep(after_s)
    assert not ended.is_set(), f"the run ended within {after_s} s, before the cancel: give it more work"
    cancelled_at = time.perf_counter()
    token.cancel()
    assert ended.wait(END_WAIT_S), f"the run was still going {END_WAIT_S} s after the cancel"
    latency = time.perf_counter() - cancelled_at
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], latency
