"""Plain-text rendering of a ``BenchReport`` (the ``--json`` form is ``BenchReport.to_dict``)."""

from __future__ import annotations

from studio.engine.bench.runner import BenchReport, CaseResult, RunResult


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MiB"


def _load(value: list[float] | None) -> str:
    return "n/a" if value is None else " ".join(f"{x:.2f}" for x in value)


def _label(case: CaseResult) -> str:
    return f"{case.family} {case.case}" + (f" ({case.model})" if case.source == "bundled" else "")


def _run_row(case: CaseResult, run: RunResult) -> list[str]:
    return [
        _label(case) if run.path == "fast" else "",
        run.path,
        f"{run.khz:.3f}",
        f"{run.realtime:.3f}x",
        _ms(run.first_block_ms),
        _ms(run.cold_first_block_ms),
        _mib(run.peak_rss_mib),
        f"{run.audio_seconds:.2f} s",
        str(run.threads),
        _load(run.load_average),
    ]


HEADER = ["case", "path", "kHz", "x real time", "first block", "cold first", "peak RSS", "input", "threads",
          "load 1/5/15"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _verdict(case: CaseResult) -> str:
    if case.meets_targets is None:
        return "no target"
    wanted = ", ".join(f"{k} {'<=' if k in ('first_block_ms', 'peak_rss_mib') else '>='} {v:g}"
                       for k, v in case.targets.items())
    return f"{'meets' if case.meets_targets else 'misses'} target ({wanted})"


def render_text(report: BenchReport) -> str:
    """A human-readable table: one fast and one baseline row per case, then speedups and notes."""
    m = report.machine
    lines = [
        f"torch {m.torch_version} · {m.device} ({m.device_name}) · {m.cores} cores, {m.cpu_capability} · "
        f"torch threads {m.torch_threads} (inter-op {m.torch_interop_threads}) · size {report.options.size}",
        f"load average at start {_load(report.load_average_start)}, at end {_load(report.load_average_end)}",
        "",
    ]
    rows = [HEADER]
    for case in report.cases:
        rows.append(_run_row(case, case.fast))
        rows.append(_run_row(case, case.baseline))
    lines += _table(rows)
    lines.append("")
    for case in report.cases:
        lines.append(
            f"{_label(case)}: {case.speedup:.1f}x the baseline "
            f"({case.baseline.description}, on {case.baseline.samples} samples); {_verdict(case)}"
        )
    notes = sorted({c.note for c in report.cases if c.note})
    lines += [f"note: {n}" for n in notes]
    for extra in report.extras:
        lines.append(f"{extra.get('name', 'extra')}: {extra.get('summary', '')}")
    return "\n".join(lines)
