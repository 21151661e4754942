"""Turning SIGTERM and SIGHUP into a clean shutdown for the length of a ``with`` block.

By default SIGTERM and SIGHUP end a Python process on the spot: no ``finally`` runs, so child
processes and temporary folders that the code meant to clean up are left behind. Inside
``with ShutdownSignals() as signals:`` the signal instead raises :class:`ShutdownRequested` in the
main thread (a ``BaseException``, so ``except Exception`` does not swallow it) while the guard is
*armed*; while it is *held* the signal is only recorded, so set-up and clean-up code that must not be
cut in half runs to its end. After the block, :meth:`ShutdownSignals.pass_on` hands a received signal
to the handler that was installed before (by default the process then ends by that signal, as it
would have without the guard).

Python runs signal handlers in the main thread only, so the guard does nothing when entered from any
other thread. Signals that are ignored (``SIG_IGN``, e.g. SIGHUP under ``nohup``) or handled outside
Python stay as they are.

Typical use::

    with ShutdownSignals() as signals:
        try:
            thing = start_thing()          # held: a signal now acts once the start is complete
            try:
                signals.arm()              # raises at once if a signal came during the start
                work(thing)
            finally:
                signals.hold()
                thing.stop()
        except ShutdownRequested:
            pass
    signals.pass_on()
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ShutdownRequested(BaseException):
    """A shutdown signal arrived while a :class:`ShutdownSignals` guard was armed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class ShutdownSignals:
    """Context manager: see the module doc. ``received`` is the first signal number seen, or None.

    Not re-entrant; enter it once, from the main thread.
    """

    def __init__(self, signals: tuple[int, ...] = SHUTDOWN_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self._armed = False
        self._previous: dict[int, object] = {}

    @property
    def installed(self) -> tuple[int, ...]:
        """The signals whose handler this guard has replaced (empty outside the main thread)."""
        return tuple(self._previous)

    def __enter__(self) -> ShutdownSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN or previous is None:
                continue
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._armed = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def arm(self) -> None:
        """From now on a signal raises ShutdownRequested; raises it at once if one came while held."""
        self._armed = True
        if self.received is not None and self._armed:
            self._armed = False
            raise ShutdownRequested(self.received)

    def hold(self) -> None:
        """From now on a signal is only recorded (for clean-up code that must run to its end)."""
        self._armed = False

    def pass_on(self) -> None:
        """After the block: deliver the received signal (if any) to the handler installed before it.
        With the default handler the process ends here; with a Python handler that returns, so does this."""
        if self._previous:
            raise RuntimeError("pass_on() belongs after the with block")
        if self.received is not None:
            signal.raise_signal(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self._armed:
            self._armed = False
            raise ShutdownRequested(signum)
