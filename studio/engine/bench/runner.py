"""Run the benchmark: every case's fast path beside its plain baseline, on the same machine at the same time.

``run_bench(BenchOptions(...))`` returns a ``BenchReport`` (``to_dict()`` is the ``--json`` schema).
For each case: a cold start (time to the first block of a fresh stream, then stopped), the measured
fast run of ``seconds`` of audio, then the baseline on as many samples as fit in ``baseline_budget_s``
(sized by a short probe run). Rates are samples made per wall-clock second including the conditioning
network; CUDA work is synchronised before every clock reading. Runs on the calling thread; logs
progress to the ``studio.engine.bench`` logger.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from studio.engine.audio.features import compute_mel
from studio.engine.bench import cases as bench_cases
from studio.engine.bench.measure import MachineInfo, PeakMemory, device_clock, load_average
from studio.engine.bench.sizes import FAMILIES, SIZES, models_for
from studio.engine.bench.targets import targets_for
from studio.engine.models.base import WaveformModel
from studio.engine.models.fast_linear import auto_threads

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchOptions:
    """What to run. seconds: audio per fast run; baseline_budget_s: wall time a baseline may take (about);
    threads: torch intra-op threads for the whole run (None = torch's default); cases: run only the
    cases of these names (``single``, ``folded``, ``parallel``, ``parallel-fp16``; empty = all);
    projection: also run each case with this spectral projection (passes after the first; None = not)."""

    families: tuple[str, ...] = FAMILIES
    size: str = "reference"
    device: str = "cpu"
    seconds: float = 2.0
    baseline_budget_s: float = 4.0
    threads: int | None = None
    seed: int = 0
    cases: tuple[str, ...] = ()
    projection: int | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown family {unknown[0]!r}; one of {', '.join(FAMILIES)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; one of {', '.join(SIZES)}")
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"seconds must be a positive number, got {self.seconds}")
        if not self.baseline_budget_s > 0:
            raise ValueError(f"baseline budget must be > 0 s, got {self.baseline_budget_s}")
        if self.projection is not None:
            from studio.engine.audio.projection import check_iterations

            check_iterations(self.projection)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA device here (use --device cpu)")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


@dataclass
class RunResult:
    """One measured run. Rates in kHz (thousand samples per wall second), times in ms / s, memory in MiB."""

    path: str
    description: str
    samples: int
    audio_seconds: float
    wall_s: float
    khz: float
    realtime: float
    first_block_ms: float | None
    cold_first_block_ms: float | None
    peak_rss_mib: float | None
    cuda_peak_mib: float | None
    threads: int
    load_average: list[float] | None


@dataclass
class CaseResult:
    """A fast path and its baseline, with their ratio (``speedup`` = fast kHz / baseline kHz)."""

    family: str
    case: str
    description: str
    size: str
    source: str
    note: str
    model: str  # the model's name (the bundled checkpoint's for --size default)
    sample_rate: int
    parameters: int
    config: dict[str, Any]
    options: dict[str, Any]
    device: str
    torch_version: str
    fast: RunResult
    baseline: RunResult
    speedup: float
    targets: dict[str, float]
    meets_targets: bool | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchReport:
    """Everything one ``studio bench`` run measured."""

    options: BenchOptions
    machine: MachineInfo
    load_average_start: list[float] | None
    load_average_end: list[float] | None = None
    cases: list[CaseResult] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "options": {**dataclasses.asdict(self.options), "families": list(self.options.families)},
            "machine": dataclasses.asdict(self.machine),
            "load_average_start": self.load_average_start,
            "load_average_end": self.load_average_end,
            "cases": [c.to_dict() for c in self.cases],
            "extras": self.extras,
        }


# ------------------------------------------------------------------------------------- inputs
def speech_like_signal(num_samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A speech-like float32 signal: a gliding voiced tone with harmonics, plus breath noise, at -12 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 150.0 + 50.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    signal = voiced * envelope + 0.05 * rng.standard_normal(num_samples)
    return (0.25 * signal / np.max(np.abs(signal))).astype(np.float32)


def mel_for_samples(model: WaveformModel, num_samples: int, seed: int) -> np.ndarray:
    """Conditioning frames [n_mels, frames] covering ``num_samples`` (frames * hop >= num_samples)."""
    hop = model.profile.hop_length
    frames = -(-num_samples // hop)
    audio = speech_like_signal(frames * hop, model.sample_rate, seed)
    return np.ascontiguousarray(compute_mel(audio, model.profile), np.float32)


# ------------------------------------------------------------------------------------- running
def _kilohertz(samples: int, wall: float) -> float:
    return samples / wall / 1000.0 if wall > 0 else float("inf")


def _native_wavenet(device: str) -> bool:
    """Whether WaveNet's native (C) step loops run here (CPU, built or buildable, not switched off)."""
    if not device.startswith("cpu"):
        return False
    from studio.engine.models.wavenet_native import native_library

    return native_library() is not None


def run_fast(model: WaveformModel, case: bench_cases.Case, mel: np.ndarray, num_samples: int,
             options: BenchOptions) -> RunResult:
    """A cold first block (then stopped), and a measured full stream of ``num_samples``."""
    device = options.device
    extra: dict[str, Any] = {}
    threads = torch.get_num_threads()
    if model.family == "wavenet" and case.options.get("folded") and _native_wavenet(device):
        # the native folded loop's worker threads: --threads N when given, else its own load-aware choice
        from studio.engine.models.wavenet_native import default_fold_threads

        if options.threads is not None:
            extra["threads"] = options.threads
        else:
            threads = default_fold_threads()
    elif model.family == "waveglow" and bench_cases.supports_option(model, "threads"):
        # WaveGlow picks its own thread count per chunk ("auto") unless --threads names one
        if options.threads is not None:
            extra["threads"] = options.threads
        elif device.startswith("cpu"):
            threads = auto_threads()
    request = bench_cases.request_for(case, mel, num_samples, options.seed, device, **extra)
    t0 = device_clock(device)
    stream = model.stream(request)
    next(stream, None)
    cold_ms = (device_clock(device) - t0) * 1000.0
    stream.close()

    samples, first_ms = 0, None
    with PeakMemory(device) as memory:
        t0 = device_clock(device)
        for block in model.stream(request):
            if first_ms is None:
                first_ms = (device_clock(device) - t0) * 1000.0
            samples += int(block.shape[0])
        wall = device_clock(device) - t0
    khz = _kilohertz(samples, wall)
    return RunResult(
        path="fast", description=case.description, samples=samples, audio_seconds=samples / model.sample_rate,
        wall_s=wall, khz=khz, realtime=khz * 1000.0 / model.sample_rate, first_block_ms=first_ms,
        cold_first_block_ms=cold_ms, peak_rss_mib=memory.peak_mib, cuda_peak_mib=memory.cuda_peak_mib,
        threads=threads, load_average=load_average(),
    )


def _timed(fn, *args) -> tuple[int, float]:
    device = args[-1]
    t0 = device_clock(device)
    made = fn(*args)
    return made, device_clock(device) - t0


def baseline_length(model: WaveformModel, mel: np.ndarray, total: int, options: BenchOptions) -> int:
    """Samples the baseline can make in about ``baseline_budget_s``, from a short probe run (also a warm-up)."""
    family, hop = model.family, model.profile.hop_length
    baseline = bench_cases.BASELINES[family]
    probe = min(total, bench_cases.BASELINE_PROBE_SAMPLES[family] or 8 * hop)
    made, wall = _timed(baseline, model, mel, probe, options.seed, options.device)
    rate = made / max(wall, 1e-6)
    n = int(rate * options.baseline_budget_s)
    if family == "waveglow":
        n = n // hop * hop
    return max(probe, min(total, n))


def run_baseline(model: WaveformModel, mel: np.ndarray, total: int, options: BenchOptions) -> RunResult:
    """The family's plain path on a length sized to the budget (see ``baseline_length``)."""
    n = baseline_length(model, mel, total, options)
    baseline = bench_cases.BASELINES[model.family]
    with PeakMemory(options.device) as memory:
        made, wall = _timed(baseline, model, mel, n, options.seed, options.device)
    khz = _kilohertz(made, wall)
    return RunResult(
        path="baseline", description=bench_cases.BASELINE_DESCRIPTIONS[model.family], samples=made,
        audio_seconds=made / model.sample_rate, wall_s=wall, khz=khz, realtime=khz * 1000.0 / model.sample_rate,
        first_block_ms=None, cold_first_block_ms=None, peak_rss_mib=memory.peak_mib,
        cuda_peak_mib=memory.cuda_peak_mib, threads=torch.get_num_threads(), load_average=load_average(),
    )


def run_case(model: WaveformModel, fast: WaveformModel, case: bench_cases.Case, spec, mel: np.ndarray,
             num_samples: int, options: BenchOptions) -> CaseResult:
    log.info("%s %s: fast path, %.2f s of audio", case.family, case.name, num_samples / model.sample_rate)
    fast_result = run_fast(fast, case, mel, num_samples, options)
    log.info("%s %s: %.2f kHz; baseline next", case.family, case.name, fast_result.khz)
    base = run_baseline(model, mel, num_samples, options)
    log.info("%s %s: baseline %.3f kHz on %d samples", case.family, case.name, base.khz, base.samples)
    targets = targets_for(case.family, case.name, options.size, options.device)
    return CaseResult(
        family=case.family, case=case.name, description=case.description, size=options.size, source=spec.source,
        note=spec.note, model=str(getattr(model, "name", "") or case.family), sample_rate=model.sample_rate, parameters=model.parameter_count(), config=spec.config,
        options=dict(case.options), device=options.device, torch_version=torch.__version__, fast=fast_result,
        baseline=base, speedup=fast_result.khz / base.khz if base.khz > 0 else float("inf"), targets=targets,
        meets_targets=_meets(targets, fast_result),
    )


def _meets(targets: dict[str, float], result: RunResult) -> bool | None:
    if not targets:
        return None
    ok = True
    if "khz" in targets:
        ok &= result.khz >= targets["khz"]
    if "realtime" in targets:
        ok &= result.realtime >= targets["realtime"]
    if "first_block_ms" in targets and result.first_block_ms is not None:
        ok &= result.first_block_ms <= targets["first_block_ms"]
    if "peak_rss_mib" in targets and result.peak_rss_mib is not None:
        ok &= result.peak_rss_mib <= targets["peak_rss_mib"]
    return bool(ok)


def run_bench(options: BenchOptions) -> BenchReport:
    """Run every case of every family in ``options`` and return what was measured."""
    own_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    try:
        report = BenchReport(options, MachineInfo.probe(options.device), load_average())
        for family in options.families:
            for spec in models_for(family, options.size, options.seed):
                model = spec.model.to(options.device)
                if spec.source == "training default":
                    log.warning(spec.note)
                fast = bench_cases.fast_model(model)
                num_samples = max(1, round(options.seconds * model.sample_rate))
                mel = mel_for_samples(model, num_samples, options.seed)
                for case in bench_cases.cases_for(model, options.device, options.projection):
                    if options.cases and case.name.removesuffix("+projection") not in options.cases:
                        continue
                    report.cases.append(run_case(model, fast, case, spec, mel, num_samples, options))
                del model, fast, spec
        report.load_average_end = load_average()
        return report
    finally:
        torch.set_num_threads(own_threads)
