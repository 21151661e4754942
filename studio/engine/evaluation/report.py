"""Reports of an evaluation run: a plain-text table of per-system means, and a JSON document."""

from __future__ import annotations

import math
from typing import Any

from studio.engine.evaluation.copysynth import EvalResult
from studio.engine.evaluation.metrics import SCORING_RATE
from studio.engine.evaluation.scoring import METRICS


def _fmt(value: float, digits: int) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(result: EvalResult) -> str:
    """Per-system means as an aligned text table (a header naming units and direction, one row per system)."""
    means = result.means()
    headers = ["system"]
    for m in result.metrics:
        spec = METRICS[m]
        unit = f" {spec.unit}" if spec.unit else ""
        headers.append(f"{spec.label}{unit} {'↑' if spec.higher_is_better else '↓'}")
    headers.append("synth ×RT")
    rows = []
    for system in result.systems:
        row = [system] + [_fmt(means[system][m], METRICS[m].digits) for m in result.metrics]
        row.append("—" if system == "original" else f"{means[system]['rtf']:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    seconds = sum(r.seconds for r in result.per_utterance if r.system == result.systems[0])
    lines.append(
        f"{len(result.utterances)} utterances, {seconds:.1f} s, profile '{result.profile.name}' "
        f"({result.profile.sample_rate} Hz), scored at {SCORING_RATE} Hz; synth ×RT = synthesis time / audio time"
    )
    others = {k: v for k, v in result.settings.get("profiles", {}).items() if v != result.profile.name}
    if others:
        lines.append("own feature profiles (the same recordings, their own mel): " + ", ".join(f"{k} '{v}'" for k, v in others.items()))
    return "\n".join(lines)


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def to_json(result: EvalResult) -> dict[str, Any]:
    """The run as a JSON-ready dict: settings, metric definitions, per-system means, per-utterance scores."""
    means = result.means()
    return {
        "scoring_rate": SCORING_RATE,
        "profile": result.profile.to_dict(),
        "settings": result.settings,
        "metrics": {
            m: {"label": METRICS[m].label, "unit": METRICS[m].unit, "higher_is_better": METRICS[m].higher_is_better}
            for m in result.metrics
        },
        "utterances": result.utterances,
        "systems": {s: {k: _clean(v) for k, v in means[s].items()} for s in result.systems},
        "per_utterance": [
            {
                "system": r.system,
                "utterance": r.utterance,
                "seconds": round(r.seconds, 3),
                "synth_seconds": round(r.synth_seconds, 3),
                **{k: _clean(v) for k, v in r.scores.items()},
            }
            for r in result.per_utterance
        ],
    }
