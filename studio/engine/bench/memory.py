"""Peak memory of long generations: does it stay flat as the audio gets longer?

``studio bench --memory --seconds 60`` generates a short (``--memory-short``, default 10 s) and a
long (``--seconds``) utterance per family, each in a fresh subprocess (so neither inherits the
other's allocations), and reports each run's peak resident memory during generation (``VmHWM``
reset after the model and the mel are ready), the growth between the two, and how much of that
growth the output itself explains (float32 samples the caller keeps: 4 bytes each).

Targets (issue 6, bundled default models): peak <= 1.5 GB for 60 s, and growth no larger than the
output's own growth plus ``GROWTH_ALLOWANCE_MIB`` plus ``STATE_BYTES_PER_SAMPLE`` per sample of
per-sample bookkeeping the autoregressive paths keep (sampled classes int64 and uniforms float32).

The fastest streaming path of each family is used (``PATHS``): the single stream for WaveNet (its
native step loop outruns the folded batch on small models, and it is what live playback uses),
folded for WaveRNN, the chunked flow for WaveGlow. Child entry point: ``python -m studio.engine.bench.memory --child ...``
prints one JSON object. Runs on the calling thread and blocks until the children are done.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

PATHS: dict[str, dict[str, Any]] = {"wavenet": {}, "wavernn": {"folded": True}, "waveglow": {}}
PEAK_TARGET_MIB = 1.5 * 1024
GROWTH_ALLOWANCE_MIB = 64.0
STATE_BYTES_PER_SAMPLE = 16
OUTPUT_BYTES_PER_SAMPLE = 4


def _child(family: str, size: str, seconds: float, seed: int, threads: int | None) -> dict[str, Any]:
    """Generate ``seconds`` of audio in this process; peak memory while streaming (MiB)."""
    import numpy as np
    import torch

    from studio.engine.bench import cases as bench_cases
    from studio.engine.bench.measure import PeakMemory, resident_mib
    from studio.engine.bench.runner import mel_for_samples
    from studio.engine.bench.sizes import model_for
    from studio.engine.models.base import GenerateRequest

    if threads is not None:
        torch.set_num_threads(threads)
    spec = model_for(family, size, seed)
    model = bench_cases.fast_model(spec.model)
    total = max(1, round(seconds * model.sample_rate))
    mel = mel_for_samples(model, total, seed)
    request = GenerateRequest(mel=mel, num_samples=total, seed=seed, block_size=4096, options=dict(PATHS[family]))
    before = resident_mib()
    blocks = []
    t0 = time.perf_counter()
    with PeakMemory("cpu") as memory:
        for block in model.stream(request):
            blocks.append(block)
    wall = time.perf_counter() - t0
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return {
        "family": family, "size": size, "source": spec.source, "seconds": seconds, "samples": int(audio.shape[0]),
        "sample_rate": model.sample_rate, "options": PATHS[family], "rss_before_mib": before,
        "peak_rss_mib": memory.peak_mib, "method": memory.method, "wall_s": wall,
    }


def measure_in_subprocess(family: str, size: str, seconds: float, seed: int = 0, threads: int | None = None,
                          timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``_child`` in a fresh interpreter and return its JSON result (RuntimeError if it fails)."""
    cmd = [sys.executable, "-m", "studio.engine.bench.memory", "--child", "--family", family, "--size", size,
           "--seconds", repr(float(seconds)), "--seed", str(seed)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"memory run of {family} ({seconds:g} s) failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _path_name(family: str) -> str:
    if PATHS[family].get("folded"):
        return "folded"
    return "chunked" if family == "waveglow" else "single stream"


def memory_case(family: str, size: str, seconds: float, short_seconds: float, seed: int = 0,
                threads: int | None = None) -> dict[str, Any]:
    """Short and long run of ``family``; peaks, growth, the output's share of it and the verdict."""
    short = measure_in_subprocess(family, size, short_seconds, seed, threads)
    long = measure_in_subprocess(family, size, seconds, seed, threads)
    extra_samples = long["samples"] - short["samples"]
    output_growth = extra_samples * OUTPUT_BYTES_PER_SAMPLE / 2**20
    allowed = output_growth + extra_samples * STATE_BYTES_PER_SAMPLE / 2**20 + GROWTH_ALLOWANCE_MIB
    growth = long["peak_rss_mib"] - short["peak_rss_mib"]
    meets = None
    if size == "default":
        meets = bool(long["peak_rss_mib"] <= PEAK_TARGET_MIB and growth <= allowed)
    summary = (
        f"{family} ({_path_name(family)}): peak {short['peak_rss_mib']:.0f} MiB "
        f"for {short['seconds']:g} s, {long['peak_rss_mib']:.0f} MiB for {long['seconds']:g} s (growth "
        f"{growth:+.0f} MiB; output itself {output_growth:.0f} MiB; allowed {allowed:.0f} MiB)"
        + ("" if meets is None else f"; {'meets' if meets else 'misses'} target (peak <= {PEAK_TARGET_MIB:.0f} MiB)")
    )
    return {
        "name": "memory", "family": family, "size": size, "short": short, "long": long, "growth_mib": growth,
        "output_growth_mib": output_growth, "allowed_growth_mib": allowed, "peak_target_mib": PEAK_TARGET_MIB,
        "meets_targets": meets, "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="child process of `studio bench --memory`")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(_child(args.family, args.size, args.seconds, args.seed, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
