"""Affine maps for generation loops, run through oneDNN on the CPU where that is faster than the BLAS.

Why: the torch CPU wheel does float32 matrix products with MKL, and MKL takes a generic code path
on non-Intel CPUs. Measured on this machine (AMD EPYC, AVX512, one thread, [B, 512] x [512, 1536]):
MKL ``addmm`` 286 / 549 / 878 µs at B = 4 / 16 / 32, oneDNN with a pre-packed weight 48 / 122 / 231 µs
(about the same at B = 1, where both read the weight once from cache). The folded WaveRNN and WaveNet
steps are such products, so their cost per step drops 2-4x.

``Affine(weight_in_out, bias)`` computes ``x @ W + bias`` (``x`` [B, in] -> [B, out]), optionally
plus a per-row tensor ``add`` ([B, out], fused into the product). It packs the weight once for
oneDNN (``torch.ops.mkldnn``, the same ops ``torch.compile`` uses for CPU linears) and checks the
packed product against ``addmm`` on a probe input; when oneDNN is missing, the weight is not a CPU
float32 tensor, the op is absent in this torch build or the probe disagrees, it uses ``addmm``.
Results equal ``addmm`` to float32 rounding (the summation order differs). Pure computation: any thread.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from torch import Tensor

log = logging.getLogger(__name__)

ENV_DISABLE = "STUDIO_NO_ONEDNN"
"""Set this environment variable (to anything but "" / "0") to use ``addmm`` everywhere."""

PACKED_MIN_BATCH = 2
"""Rows from which the packed product is used; a single row reads the weight once either way."""

_PROBE_ROWS = 4
_PACK_BATCH_HINT = 16


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """Set torch's intra-op thread count for the ``with`` body (None: leave it), then restore it.

    Scope, measured with this torch (OpenMP build): the count belongs to the calling thread — another
    thread's setting does not change it — but a thread that first uses torch while the body runs
    starts with the body's count (torch keeps the latest value to initialise new threads), so keep
    bodies to the work itself. Every place that changes the count goes through here (or, for a step
    loop that yields between blocks, restores it around each yield: ``wavernn_step._drive``).
    """
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise ValueError(f"options['threads'] must be >= 1, got {threads}")
    own = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(own)


def auto_threads() -> int:
    """Intra-op threads for a throughput-bound parallel model (WaveGlow): every core this process may
    use while the machine has at least one idle core (1-minute load average <= cores - 1), else 1.

    Why: measured here (2 cores, load 3-9), two threads ran WaveGlow 2.7-4x SLOWER than one (OpenMP
    barriers wait on a descheduled thread), while on an idle machine two cores are what the 6.5 kHz
    target assumes.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1
    return max(1, cores) if load <= cores - 1 else 1


def onednn_enabled() -> bool:
    """Whether packed oneDNN products may be used at all (built in, and not disabled by ``ENV_DISABLE``)."""
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return False
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


def _pack(weight_in_out: Tensor, bias: Tensor | None) -> Tensor | None:
    """oneDNN-packed ``weight.T`` or None when packing is unavailable or disagrees with ``addmm``."""
    w = weight_in_out
    if w.device.type != "cpu" or w.dtype != torch.float32 or w.dim() != 2 or 0 in w.shape:
        return None
    if not onednn_enabled():
        return None
    try:
        # one thread: these are tiny ops, and a spinning two-thread team on a loaded machine made each
        # pack take 30-60 ms instead of 0.2 ms (measured here), which delayed the first step and cancels
        with intra_op_threads(1), torch.inference_mode():
            packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().T.contiguous(), _PACK_BATCH_HINT)
            probe = torch.randn(_PROBE_ROWS, w.shape[0], generator=torch.Generator().manual_seed(0))
            got = torch.ops.mkldnn._linear_pointwise(probe, packed, bias, "none", [], "")
            want = probe @ w if bias is None else torch.addmm(bias, probe, w)
    except (RuntimeError, TypeError, AttributeError) as exc:  # op missing or unsupported in this build
        log.debug("oneDNN packing unavailable (%s): using addmm", exc)
        return None
    scale = float(want.abs().max()) + 1.0
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
        log.warning("oneDNN product disagrees with addmm on a probe input: using addmm")
        return None
    return packed


class Affine:
    """``x @ weight + bias (+ add)`` for x [B, in]; weight [in, out], bias [out] or None.

    ``packed`` tells whether oneDNN is used (for B >= ``PACKED_MIN_BATCH``); ``weight``/``bias`` are
    kept for the ``addmm`` path and for inspection. Call under ``torch.inference_mode`` or ``no_grad``.
    """

    __slots__ = ("bias", "packed", "weight")

    def __init__(self, weight_in_out: Tensor, bias: Tensor | None = None) -> None:
        self.weight = weight_in_out.detach().contiguous()
        self.bias = None if bias is None else bias.detach().contiguous()
        self.packed = _pack(self.weight, self.bias)

    @property
    def uses_onednn(self) -> bool:
        return self.packed is not None

    def __call__(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """x [B, in] (+ add [B, out]) -> [B, out]."""
        if self.packed is not None and x.shape[0] >= PACKED_MIN_BATCH:
            x = x.contiguous()
            if add is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            out = torch.ops.mkldnn._linear_pointwise.binary(x, add.contiguous(), self.packed, None, "add")
            return out if self.bias is None else out.add_(self.bias)
        if add is None:
            return x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)
        out = torch.addmm(add, x, self.weight)
        return out if self.bias is None else out.add_(self.bias)
