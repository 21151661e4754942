"""Real-time scheduling for the live path's threads, where the OS allows it (Linux; root or an rtprio limit).

On a busy two-core machine a normal thread can wait tens of milliseconds for a core. The live path
has three kinds of threads that must not: PortAudio's callback threads, the conversion worker, and
the sound server client's own threads (the ALSA ``pulse`` plugin runs one ``threaded-ml`` mainloop
per stream; it relays the server's requests for data to the callback). Measured here with the other
threads at normal priority: a 37 ms pause of the output path made the device underflow, and through
the pulse plugin every underflow costs ~2 s of silence while the stream restarts.

Requests that the OS refuses are reported (False), never raised: live conversion still runs, only
with less protection against a loaded machine.

What priority cannot help against: a virtual machine whose host stops all of its CPUs at once (16–46 ms
stops every few seconds on the 2-core test VMs; see pause_monitor.py). Only buffers ride through those
(live.DEFAULT_OUTPUT_LATENCY_S, live.PAUSE_TOLERANCE_MS).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

SOUND_CLIENT_THREAD_NAMES = ("threaded-ml",)  # libpulse's pa_threaded_mainloop
_TASKS = "/proc/self/task"


def make_realtime(priority: int, thread_id: int = 0) -> bool:
    """SCHED_FIFO ``priority`` (1–99) for ``thread_id`` (0: the calling thread). One syscall; True if granted."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        return False
    return True


def thread_ids() -> set[int]:
    """The ids of this process's threads (empty where /proc is not available)."""
    try:
        return {int(t) for t in os.listdir(_TASKS)}
    except OSError:
        return set()


def thread_name(thread_id: int) -> str:
    try:
        with open(f"{_TASKS}/{thread_id}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def promote_sound_client_threads(since: set[int], priority: int) -> list[int]:
    """Give real-time ``priority`` to sound-client threads started after the snapshot ``since``.

    Returns the ids that were promoted (empty where refused or where there are none, e.g. a host API
    without client threads).
    """
    promoted = []
    for tid in sorted(thread_ids() - since):
        if thread_name(tid) in SOUND_CLIENT_THREAD_NAMES and make_realtime(priority, tid):
            promoted.append(tid)
    if promoted:
        log.debug("real-time priority %d for sound client threads %s", priority, promoted)
    return promoted
