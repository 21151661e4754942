"""A witness of machine pauses: a separate process that sleeps 1 ms in a loop and records oversleeps.

Live audio rides through a pause only as long as its buffers (see docs/voice.md, "Live mode"). On a
virtual machine the host can stop every CPU of the guest at once: measured on the 2-core test VMs,
both CPUs stopped together for 16, 26, 36 or 46 ms every few seconds, seen alike by SCHED_FIFO threads
pinned to each CPU, so no priority inside the guest helps. A live run's glitches can only be judged
together with such pauses, so evaluations and tests run this monitor beside the converter.

It runs in its own process (its own interpreter lock: a stall of the process under test does not
show here) at SCHED_FIFO priority where allowed. Run as
``python -m studio.engine.convert.pause_monitor`` it measures until its standard input closes, then
prints one line of JSON: ``longest_ms``, ``pauses`` ([start in s since it began, length in ms] for
each oversleep over ``REPORT_OVER_MS``), ``seconds`` and ``realtime``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from studio.engine.convert import realtime

SLEEP_S = 0.001
REPORT_OVER_MS = 10.0
MONITOR_PRIORITY = 60  # above the live path's threads: it only sleeps


def watch(stop: threading.Event) -> dict:
    """Sleep SLEEP_S in a loop until ``stop`` is set; the oversleeps (runs on the calling thread)."""
    granted = realtime.make_realtime(MONITOR_PRIORITY)
    start = last = time.monotonic()
    longest = 0.0
    pauses = []
    while not stop.is_set():
        time.sleep(SLEEP_S)
        now = time.monotonic()
        over = (now - last - SLEEP_S) * 1000
        if over > longest:
            longest = over
        if over > REPORT_OVER_MS:
            pauses.append([round(last - start, 3), round(over, 1)])
        last = now
    return {"longest_ms": round(longest, 1), "pauses": pauses, "seconds": round(last - start, 2), "realtime": granted}


class PauseMonitor:
    """``start()`` the witness process, ``stop()`` it and get its report (a dict, see the module doc)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def start(self) -> PauseMonitor:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "studio.engine.convert.pause_monitor"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
        )
        return self

    def stop(self, timeout: float = 10.0) -> dict:
        """End the witness; its report, or ``{"longest_ms": None, ...}`` when it failed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return {"longest_ms": None, "pauses": [], "seconds": 0.0, "realtime": False}
        try:
            out, _ = proc.communicate(input="", timeout=timeout)
            return json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            proc.wait()
            return {"longest_ms": None, "pauses": [], "seconds": 0.0, "realtime": False}

    def __enter__(self) -> PauseMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self.stop()


def _main() -> None:
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print(json.dumps(watch(stop)), flush=True)


if __name__ == "__main__":
    _main()
