"""The speed targets of the benchmark (issue 6), per case, size and device.

Reference sizes on a CPU: the rates the studio aims for on 2 AVX2 cores. Default (bundled) models:
every vocoder streams at least 1.5x real time with its first block within 150 ms and a peak resident
memory of at most 1.5 GB. GPU figures have no target (no GPU was available to set one).
"""

from __future__ import annotations

REFERENCE_CPU_KHZ: dict[tuple[str, str], float] = {
    ("wavenet", "single"): 2.0,
    ("wavenet", "folded"): 10.0,
    ("wavernn", "single"): 2.0,
    ("wavernn", "folded"): 10.0,
    ("waveglow", "parallel"): 6.5,
}

DEFAULT_MODEL_TARGETS: dict[str, float] = {"realtime": 1.5, "first_block_ms": 150.0, "peak_rss_mib": 1.5 * 1024}


def targets_for(family: str, case: str, size: str, device: str) -> dict[str, float]:
    """The targets a case is held to (empty when there is none)."""
    if not device.startswith("cpu"):
        return {}
    if size == "reference":
        khz = REFERENCE_CPU_KHZ.get((family, case))
        return {} if khz is None else {"khz": khz}
    if size == "default":
        return dict(DEFAULT_MODEL_TARGETS)
    return {}
