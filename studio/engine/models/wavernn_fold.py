"""Folded (batched) generation: cut a long conditioning sequence into overlapping segments and join them.

Layout, with ``L = length`` and ``O = overlap`` (samples): segment ``i`` covers the global samples
``[i * (L + O), i * (L + O) + L + 2 * O)``, so neighbours share ``O`` samples. The segments are
generated as one batch, each from a zero state. In a shared region of ``O`` samples, the later
segment's first ``W = O // 2`` samples are its warm-up (thrown away: the recurrent state is still
settling there), and over the remaining ``C = O - W`` samples the earlier segment fades out while the
later one fades in. The default fades are equal-power (``cos``/``sin`` of a quarter period, so
``fade_in**2 + fade_out**2 == 1``): two separately generated segments are nearly uncorrelated, and
equal power keeps the loudness steady through the seam. ``fade="linear"`` (weights summing to one)
reconstructs identical overlapping content exactly, which the tests use.

Everything here is pure tensor logic on the first (time) dimension; it runs on any device.
"""

from __future__ import annotations

import math

import torch

FADES = ("power", "linear")


def check_fold(length: int, overlap: int) -> None:
    """Raise ValueError unless ``length`` and ``overlap`` (samples) make a valid fold."""
    if length < 1 or overlap < 2:
        raise ValueError(f"fold_length must be >= 1 and fold_overlap >= 2 samples, got {length} and {overlap}")


def fold_count(total: int, length: int, overlap: int) -> int:
    """How many segments cover ``total`` samples (at least one)."""
    check_fold(length, overlap)
    return max(1, math.ceil((total - overlap) / (length + overlap)))


def segment_starts(count: int, length: int, overlap: int) -> list[int]:
    """Global start sample of each segment."""
    return [i * (length + overlap) for i in range(count)]


def fold(x: torch.Tensor, length: int, overlap: int) -> torch.Tensor:
    """Cut ``x`` [T, ...] into overlapping segments [N, L + 2 * O, ...]; zeros pad the end of the last one."""
    total = x.shape[0]
    count = fold_count(total, length, overlap)
    seg = length + 2 * overlap
    padded_total = count * (length + overlap) + overlap
    if padded_total > total:
        pad = x.new_zeros((padded_total - total, *x.shape[1:]))
        x = torch.cat([x, pad], dim=0)
    return torch.stack([x[s : s + seg] for s in segment_starts(count, length, overlap)])


def fade_curves(overlap: int, fade: str = "power", *, dtype=torch.float32, device=None):
    """(fade_in, fade_out) over the ``C = overlap - overlap // 2`` cross-fade samples.

    The curves are sampled at the centres of the samples, ``s = (k + 0.5) / C``:
    "power": ``sin(pi/2 * s)`` and ``cos(pi/2 * s)``; "linear": ``s`` and ``1 - s``.
    """
    if fade not in FADES:
        raise ValueError(f"unknown cross-fade '{fade}'; use one of {FADES}")
    cross = overlap - overlap // 2
    s = (torch.arange(cross, dtype=torch.float64, device=device) + 0.5) / cross
    if fade == "power":
        fade_in, fade_out = torch.sin(0.5 * math.pi * s), torch.cos(0.5 * math.pi * s)
    else:
        fade_in, fade_out = s, 1.0 - s
    return fade_in.to(dtype), fade_out.to(dtype)


def segment_weights(
    count: int, length: int, overlap: int, fade: str = "power", *, dtype=torch.float32, device=None
) -> torch.Tensor:
    """Per-sample weight of each segment in the join, [N, L + 2 * O] (0 on warm-up samples)."""
    warm = overlap // 2
    fade_in, fade_out = fade_curves(overlap, fade, dtype=dtype, device=device)
    w = torch.ones(count, length + 2 * overlap, dtype=dtype, device=device)
    if count > 1:
        w[1:, :warm] = 0.0
        w[1:, warm:overlap] = fade_in
        w[:-1, length + overlap + warm :] = fade_out
    return w


def unfold(y: torch.Tensor, length: int, overlap: int, total: int, fade: str = "power") -> torch.Tensor:
    """Join segments [N, L + 2 * O] into [total] samples (see the module doc for the cross-fade)."""
    count, seg = y.shape
    if seg != length + 2 * overlap:
        raise ValueError(f"segments are {seg} samples long, expected length + 2 * overlap = {length + 2 * overlap}")
    return unfold_prefix(y, length, overlap, count * (length + overlap) + overlap, fade)[:total]


def unfold_prefix(y: torch.Tensor, length: int, overlap: int, upto: int, fade: str = "power") -> torch.Tensor:
    """The joined samples ``[0, upto)`` from segments [N, L + 2 * O] (later parts of ``y`` may be unset)."""
    count = y.shape[0]
    w = segment_weights(count, length, overlap, fade, dtype=y.dtype, device=y.device)
    out = y.new_zeros(count * (length + overlap) + overlap)
    for i, start in enumerate(segment_starts(count, length, overlap)):
        if start >= upto:
            break
        n = min(length + 2 * overlap, upto - start)
        out[start : start + n] += y[i, :n] * w[i, :n]
    return out[:upto]


def final_prefix(steps: int, count: int, length: int, overlap: int) -> int:
    """How many joined samples are final after every segment has made ``steps`` samples.

    Segment 0 alone decides ``[0, L + O + W)``; everything after waits for segment 0's cross-fade
    tail, which is made last, so the prefix is ``steps`` up to that point and everything at the end.
    """
    seg = length + 2 * overlap
    if steps >= seg:
        return count * (length + overlap) + overlap
    if count == 1:
        return steps
    return min(steps, length + overlap + overlap // 2)
