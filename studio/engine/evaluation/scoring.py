"""Named metrics and how to run a chosen set of them on one (reference, resynthesis) pair.

``METRICS`` maps the names used by ``studio eval --metrics`` and in reports to their definition:
direction (higher or lower is better), unit, which packages they need, and the function. Everything
is scored at ``SCORING_RATE`` (16 kHz).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from studio.engine.evaluation import metrics
from studio.engine.evaluation.extras import INSTALL_HINT, MissingExtraError, require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    """One metric as reports show it.

    key: short name (``pesq``). label: column heading. unit: '' when unitless. higher_is_better: the
    direction. needs: importable packages of the eval extra (empty for numpy metrics). intrusive: needs
    the reference. fn: ``fn(ref, deg, sr) -> float`` (reference-free metrics ignore ``ref``).
    """

    key: str
    label: str
    unit: str
    higher_is_better: bool
    needs: tuple[str, ...]
    intrusive: bool
    fn: Callable[[np.ndarray, np.ndarray, int], float]
    digits: int = 2


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec("pesq", "PESQ-wb", "MOS", True, ("pesq",), True, metrics.pesq_wb),
        MetricSpec("stoi", "STOI", "", True, ("pystoi",), True, metrics.stoi, digits=3),
        MetricSpec("mcd", "MCD", "dB", False, ("pyworld", "pysptk"), True, metrics.mcd),
        MetricSpec(
            "dnsmos", "DNSMOS OVRL", "MOS", True, ("speechmos", "onnxruntime"), False,
            lambda ref, deg, sr: metrics.dnsmos_ovrl(deg, sr),
        ),
        MetricSpec("f0", "F0 err", "cents", False, ("pyworld",), True, metrics.f0_error_cents, digits=1),
        MetricSpec("vuv", "V/UV err", "", False, ("pyworld",), True, metrics.voicing_error, digits=3),
        MetricSpec("lsd", "LSD", "B", False, (), True, metrics.log_spectral_distance),
        MetricSpec("mrstft", "MR-STFT", "", False, (), True, metrics.mrstft_distance, digits=3),
    )
}
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)
NUMPY_METRICS: tuple[str, ...] = tuple(k for k, m in METRICS.items() if not m.needs)


def parse_metric_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"pesq,stoi"`` or a sequence of names → validated names in the given order (None → all)."""
    if text is None:
        return DEFAULT_METRICS
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or names}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def check_available(names: Sequence[str]) -> None:
    """Raise ``MissingExtraError`` before any work when a chosen metric's package is not installed."""
    missing = sorted({pkg for n in names for pkg in METRICS[n].needs if importlib.util.find_spec(pkg) is None})
    if missing:
        chosen = ", ".join(n for n in names if set(METRICS[n].needs) & set(missing))
        raise MissingExtraError(
            f"the metric(s) {chosen} need {', '.join(missing)} (the optional eval extra): {INSTALL_HINT} "
            f"— or choose numpy-only metrics with --metrics {','.join(NUMPY_METRICS)}"
        )
    for name in names:  # pyworld/pysptk import pkg_resources: fail now, with the cause, not mid-run
        for pkg in METRICS[name].needs:
            require(pkg, METRICS[name].label)


def score_pair(ref: np.ndarray, deg: np.ndarray, sr: int, names: Sequence[str]) -> dict[str, float]:
    """Each chosen metric of ``deg`` against ``ref`` (mono float arrays at ``sr``), by name.

    A metric that cannot score this pair (e.g. PESQ finds no speech) gives NaN and is left out of means.
    """
    out: dict[str, float] = {}
    for name in names:
        try:
            out[name] = float(METRICS[name].fn(ref, deg, sr))
        except ValueError as exc:
            log.warning("%s not scored: %s", METRICS[name].label, exc)
            out[name] = float("nan")
    return out
