"""The runs log: one Markdown table row per recipe run, kept in docs/models.md between two markers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

START = "<!-- recipe-runs:start -->"
END = "<!-- recipe-runs:end -->"
HEADER = (
    "| finished | recipe | hardware | steps reached | training wall time (all runs) | held-out loss | scores vs Griffin-Lim, same run | started from |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _scores_text(scores: dict[str, Any]) -> str:
    if "model" in scores:
        m, g = scores["model"], scores.get("griffin_lim", {})
        parts = [f"{k} {m[k]:.3g} (GL {g.get(k, float('nan')):.3g})" for k in ("pesq", "stoi", "mcd", "dnsmos", "lsd") if k in m]
        if "envelope_correlation" in scores:
            parts.append(f"env. corr. {scores['envelope_correlation']:.2f}")
        return "; ".join(parts)
    free = scores.get("free_generation", {})
    return (
        f"flatness {free.get('flatness', float('nan')):.3f} (noise {free.get('flatness_white_noise', float('nan')):.3f}, "
        f"held-out music {free.get('flatness_heldout_music', float('nan')):.3f}); "
        f"{100 * free.get('band_energy_50_4000hz', 0):.0f}% energy 50–4000 Hz; strongest bin "
        f"{free.get('peak_to_median_db', float('nan')):.0f} dB over the median (noise "
        f"{free.get('peak_to_median_db_white_noise', float('nan')):.0f}, held-out music "
        f"{free.get('peak_to_median_db_heldout_music', float('nan')):.0f})"
    )


def row_for(result: Any, training: dict[str, Any]) -> str:
    """One table row for a ``RecipeResult`` and its checkpoint's training record."""
    t = result.train
    reached = int(training.get("steps", t.step))
    status = {"cancelled": "stopped: time box" if getattr(result, "time_boxed", False) else "stopped"}.get(t.status, t.status)
    loss = "—" if t.heldout_loss is None else f"{t.heldout_loss:.3f}"
    return (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {result.recipe} | {training.get('hardware', '?')} | "
        f"{reached} ({status}) | {t.wall_s:.0f} s | {loss} | {_scores_text(result.scores)} | "
        f"{result.started_from}{'; ' + result.note if getattr(result, 'note', '') else ''} |"
    )


def append_run_record(path: Path, result: Any, training: dict[str, Any]) -> None:
    """Add the run's row to the table between the markers in ``path`` (made, with the markers, if absent)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    row = row_for(result, training)
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n## Recipe runs\n\n{START}\n{HEADER}\n{END}\n"
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    lines = [line for line in body.strip().splitlines() if line.strip()]
    if not lines or not lines[0].startswith("| finished"):
        lines = HEADER.splitlines() + lines
    lines.append(row)
    path.write_text(f"{head}{START}\n" + "\n".join(lines) + f"\n{END}{tail}", encoding="utf-8")
