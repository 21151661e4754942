"""Fitting a run's learning-rate schedule to a wall-time budget (``TrainOptions.fit_seconds``).

A run given minutes rather than steps (``studio train --recipe NAME --minutes M``) should end its
schedule (warm-up, cosine decay to the final rate) when the minutes are up, on any machine: a CPU
and an H100 differ a hundredfold in steps per second, so no fixed step count fits both. The
training loop measures its own rate and, after every step, moves the run's last step to where that
rate reaches the end of the budget; the schedule's rate at each step follows. Pure arithmetic, no
torch, no threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_MEASURED_STEPS = 20
"""Steps measured before the first fit (the first steps pay for cuDNN's kernel search, allocations)."""

MIN_MEASURED_SECONDS = 2.0
"""Wall seconds measured before the first fit."""


@dataclass
class ScheduleFit:
    """Fits ``steps`` to a deadline. Times are ``time.perf_counter()`` seconds.

    deadline: when training should have ended (the final evaluation and checkpoint come after it).
    cap: the most steps the run may reach (its ``steps`` before fitting). The rate is measured from the first completed step (``begin``), so setup,
    the first evaluation and the first step's warm-up do not count as training speed.
    """

    deadline: float
    cap: int
    begin_time: float | None = None
    begin_step: int = 0

    def begin(self, now: float, step: int) -> None:
        """Start measuring at ``step`` (called after the first training step)."""
        self.begin_time, self.begin_step = now, step

    def fitted_steps(self, now: float, step: int, current: int) -> int:
        """The run's last step given the rate measured so far: ``current`` until enough is measured,
        then ``step + rate * (deadline - now)``, never past ``cap`` nor below ``step`` (past the
        deadline: end at this step)."""
        if self.begin_time is None:
            return current
        measured_steps, measured_s = step - self.begin_step, now - self.begin_time
        if measured_steps < MIN_MEASURED_STEPS or measured_s < MIN_MEASURED_SECONDS:
            return current
        rate = measured_steps / measured_s
        remaining = max(self.deadline - now, 0.0)
        return int(min(self.cap, step + math.floor(rate * remaining)))
