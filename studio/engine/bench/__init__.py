"""The speed benchmark behind ``studio bench``: fast generation paths beside their plain baselines.

``run_bench(BenchOptions(...)) -> BenchReport``; ``render_text(report)`` or ``report.to_dict()`` (JSON).
No Qt here; the GUI latency case lives in ``studio.ui.latency_bench``.
"""

from studio.engine.bench.report import render_text
from studio.engine.bench.runner import BenchOptions, BenchReport, CaseResult, RunResult, run_bench
from studio.engine.bench.sizes import FAMILIES, SIZES, model_for

__all__ = ["FAMILIES", "SIZES", "BenchOptions", "BenchReport", "CaseResult", "RunResult", "model_for",
           "render_text", "run_bench"]
