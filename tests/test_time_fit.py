"""Fitting a run's last step to a wall-time budget (pure arithmetic; the run itself is in test_recipes)."""

from __future__ import annotations

from studio.engine.train.time_fit import MIN_MEASURED_SECONDS, MIN_MEASURED_STEPS, ScheduleFit


def test_nothing_moves_before_enough_is_measured():
    fit = ScheduleFit(deadline=100.0, cap=10_000)
    assert fit.fitted_steps(now=50.0, step=5, current=10_000) == 10_000  # not begun
    fit.begin(now=1.0, step=1)
    assert fit.fitted_steps(now=1.0 + MIN_MEASURED_SECONDS + 1, step=MIN_MEASURED_STEPS, current=10_000) == 10_000
    assert fit.fitted_steps(now=1.0 + MIN_MEASURED_SECONDS / 2, step=1 + 2 * MIN_MEASURED_STEPS, current=10_000) == 10_000


def test_the_last_step_is_where_the_measured_rate_meets_the_deadline():
    fit = ScheduleFit(deadline=100.0, cap=10_000)
    fit.begin(now=10.0, step=501)
    # 10 steps/s measured over 10 s; 80 s left -> 800 more steps
    assert fit.fitted_steps(now=20.0, step=601, current=10_000) == 601 + 800
    # a slower machine than the cap assumed, and a faster one: capped at the run's own step count
    assert fit.fitted_steps(now=20.0, step=5501, current=1401) == 10_000


def test_past_the_deadline_the_run_ends_at_the_current_step():
    fit = ScheduleFit(deadline=100.0, cap=10_000)
    fit.begin(now=0.0, step=1)
    assert fit.fitted_steps(now=120.0, step=900, current=1000) == 900
