"""WaveRNN generation steps compiled to native code: the step loop without per-op dispatch.

Why: a WaveRNN step of the torch stepper (``wavernn_step``) is ~30 small torch ops for mu-law and ~60
for dual (GRU gates, residuals, the FC head, the inverse-CDF draw). For the bundled 128-unit model the
arithmetic is ~0.2 MFLOP per sample, so the dispatch overhead (~100 µs per step on the loaded test
machine) is nearly all of its time (perf.md, phase 3). ``wavernn_native.c`` runs whole runs of steps
(both GRUs, the head, softmax + cumulative sum + search with the given uniform) in one C call, for B
streams at once (folded generation shares each weight load among four streams). The conditioning's
share of every layer stays a torch product per chunk (``_Stepper.project``, oneDNN-packed).

Build: through ``native_build`` (shared with ``wavenet_native``: compiler lookup, flags, cache folder ``~/.cache/waveform-studio/
native/`` or ``$WAVEFORM_STUDIO_CACHE/native``): compiled at first use (~0.5 s), named by a hash of the
source, the headers it includes (native_kernels.h), flags and machine, reused afterwards. When no compiler is found, the build fails or
``STUDIO_NO_NATIVE=1`` is set, ``native_library()`` returns None (logged once, with the reason) and the
caller uses the torch stepper.

Equality: the same function as ``MulawStepper`` / ``DualStepper`` to float32 rounding; the draws use the
same uniforms as ``sample_classes`` (``tests/test_fastpaths.py``). CPU float32 only. Threads: a
``NativeRun`` belongs to the thread that iterates it; the C call releases the GIL (ctypes).
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from studio.engine.models.fast_linear import intra_op_threads
from studio.engine.models.native_build import ENV_DISABLE, find_compiler, load_library  # noqa: F401 (re-exported)
from studio.engine.models.wavernn_step import DualStepper, LpcStepper, MulawStepper

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("wavernn_native.c")

RUN_SECONDS = (0.002, 0.01)
"""Wall time one C call aims for (between two looks at the cancel flag): the steps per call double below
the first bound and halve above the second (1-1024 steps)."""

MAX_RUN_STEPS = 1024

_lock = threading.Lock()
_state: dict[str, object] = {}


def _declare(lib: ctypes.CDLL) -> None:
    fn = lib.wavernn_steps
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_float, ctypes.c_void_p] + [ctypes.c_int64] * 3 + [
        ctypes.c_void_p, ctypes.c_int]


def native_library() -> ctypes.CDLL | None:
    """The loaded step library, building it on first call; None when unavailable (see the module doc)."""
    with _lock:
        if "lib" not in _state:
            _state["lib"] = load_library("WaveRNN", SOURCE, _declare)
        return _state["lib"]  # type: ignore[return-value]


def _offsets(sizes: list[int]) -> list[int]:
    out, pos = [], 0
    for n in sizes:
        out.append(pos)
        pos += n
    return out


class NativeWeights:
    """A stepper's composed weights laid out for the C loop (``wavernn_native.c`` header), made once.

    ``stepper``: a ``MulawStepper`` or ``DualStepper`` on CPU float32 (its projections stay in torch).
    """

    def __init__(self, stepper: MulawStepper | DualStepper) -> None:
        self.stepper = stepper
        self.order = 0
        if isinstance(stepper, LpcStepper):
            self.mode, self.draws, self.order = 2, 1, stepper.order
            mu = float(2**stepper.bits - 1)
            consts = torch.tensor([mu, 1.0 / math.log1p(mu)], dtype=torch.float32)
            parts = [stepper.i_x, stepper.g1_x, stepper.hh1.weight, stepper.hh1.bias, stepper.hh2.weight,
                     stepper.hh2.bias, stepper.w2_x.weight, stepper.wf1_x.weight, stepper.wf2_x.weight,
                     stepper.fc3.weight, stepper.fc3.bias, stepper.input_table, stepper.decode_table, consts]
            self.width, self.fc = stepper.rnn_dims, stepper.wf2_x.weight.shape[0]
            self.classes = stepper.fc3.weight.shape[1]
        elif isinstance(stepper, MulawStepper):
            self.mode, self.draws = 0, 1
            parts = [stepper.i_x, stepper.g1_x, stepper.hh1.weight, stepper.hh1.bias, stepper.hh2.weight,
                     stepper.hh2.bias, stepper.w2_x.weight, stepper.wf1_x.weight, stepper.wf2_x.weight,
                     stepper.fc3.weight, stepper.fc3.bias, stepper.input_table]
            self.width, self.fc = stepper.rnn_dims, stepper.wf2_x.weight.shape[0]
            self.classes = stepper.fc3.weight.shape[1]
        elif isinstance(stepper, DualStepper):
            self.mode, self.draws = 1, 2
            parts = [stepper.w_prev, stepper.w_cur, stepper.hh.weight, stepper.hh.bias, stepper.coarse_w1.weight,
                     stepper.fine_w1.weight, stepper.coarse_w2.weight, stepper.fine_w2.weight,
                     stepper.coarse_fc3.weight, stepper.coarse_fc3.bias, stepper.fine_fc3.weight,
                     stepper.fine_fc3.bias, stepper.input_table]
            self.width, self.fc = stepper.rnn_dims, stepper.coarse_w2.weight.shape[0]
            self.classes = stepper.coarse_fc3.weight.shape[1]
        else:
            raise TypeError(f"no native loop for {type(stepper).__name__}")
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in parts):
            raise ValueError("the native WaveRNN step loop runs on CPU float32 weights only")
        self.offsets = _offsets([p.numel() for p in parts])
        self.blob = torch.cat([p.detach().reshape(-1) for p in parts]).contiguous()
        self.table = stepper.input_table

    def state_sizes(self, batch: int) -> list[int]:
        """Float counts of the state and scratch arrays for ``batch`` streams (header order)."""
        b, r, f, k = batch, self.width, self.fc, self.classes
        if self.mode == 2:  # h1 h2 hist e_in gh1 gh2 gi x1 y y2 logits work
            return [b * r, b * r, b * self.order, b, 3 * b * r, 3 * b * r, 3 * b * r, b * r, b * f, b * f, b * k, k]
        if self.mode == 0:  # h1 h2 x gh1 gh2 gi x1 y y2 logits work
            return [b * r, b * r, b, 3 * b * r, 3 * b * r, 3 * b * r, b * r, b * f, b * f, b * k, k]
        return [b * r, 2 * b, 3 * b * r, 3 * b * r, b * r, b * f, b * f, b * k, k]  # h prev gh gi hn y y2 logits work


class NativeRun:
    """The C step loop over ``batch`` streams from a zero state (the torch stepper's ``_initial_state``).

    ``steps(proj, uniforms, temperature, classes, t0, n, logits_out, forced)`` runs steps ``t0 .. t0+n-1``;
    ``run_spans`` is the generation driver (the counterpart of ``_Stepper.run_spans``, drawing in C).
    """

    def __init__(self, weights: NativeWeights, lib: ctypes.CDLL, batch: int, start_class: int) -> None:
        self.weights, self.lib, self.batch = weights, lib, batch
        sizes = weights.state_sizes(batch)
        self.state = torch.zeros(sum(sizes))
        offs = _offsets(sizes)
        head = [weights.mode, batch, weights.width, weights.fc, weights.classes]
        if weights.mode == 2:
            head.append(weights.order)
        self.meta = torch.tensor([*head, *weights.offsets, *offs], dtype=torch.int64)
        table = weights.table
        if weights.mode == 2:  # zero history, the previous excitation is the class of 0.0
            self.state[offs[3] : offs[3] + batch] = table[start_class]
        elif weights.mode == 0:
            self.state[offs[2] : offs[2] + batch] = table[start_class]
        else:
            prev = self.state[offs[1] : offs[1] + 2 * batch].view(batch, 2)
            prev[:, 0], prev[:, 1] = table[start_class // 256], table[start_class % 256]

    def steps(
        self,
        proj: list[Tensor],
        k0: int,
        uniforms: Tensor | None,
        temperature: float,
        classes: Tensor,
        t0: int,
        n: int,
        logits_out: Tensor | None = None,
        forced: bool = False,
    ) -> None:
        """Steps ``t0 .. t0+n-1`` on rows ``k0 .. k0+n-1`` of the chunk projections ``proj`` ([m, B, d_i],
        contiguous float32). uniforms [>= t0+n, B, draws] float32 (contiguous) or None for argmax;
        classes [B, T] int64 contiguous (written, or read when ``forced``; an LPC model writes its
        pre-emphasised signal into a float32 [B, T] instead, and cannot be forced); logits_out [n, draws, B, K]."""
        if forced and self.weights.mode == 2:
            raise ValueError("the LPC step loop draws its excitation: it has no forced mode")
        b = self.batch
        addrs = (ctypes.c_int64 * len(proj))(*(p.data_ptr() + k0 * b * p.shape[2] * 4 for p in proj))
        draws = self.weights.draws
        u_ptr = None
        if uniforms is not None and temperature > 0.0:
            u_ptr = uniforms.data_ptr() + t0 * b * draws * 4
        inv_temp = 0.0 if temperature <= 0.0 else 1.0 / temperature
        self.lib.wavernn_steps(
            self.meta.data_ptr(), self.weights.blob.data_ptr(), self.state.data_ptr(), ctypes.addressof(addrs),
            u_ptr, inv_temp, classes.data_ptr(), classes.shape[1], t0, n,
            None if logits_out is None else logits_out.data_ptr(), int(forced),
        )

    def run_spans(
        self,
        spans: Callable[[int, int], Tensor],
        total: int,
        uniforms: Tensor,
        temperature: float,
        classes: Tensor,
        yield_every: int,
        should_stop: Callable[[], bool] | None = None,
        threads: int = 1,
        tap=None,
    ) -> Iterator[int]:
        """Generate ``total`` steps into classes [B, total] (long, contiguous); yield steps done so far.

        Same contract as ``_Stepper.run_spans``: yields after every ``yield_every`` steps and at the
        end, returns early (after yielding what is done) once ``should_stop()`` is true (looked at
        between C calls of 2-10 ms). ``threads``: torch intra-op threads for the per-chunk conditioning
        and projections (the C loop is one thread). ``tap``: a ``DistributionTap`` fed with stream 0's
        part-0 logits.
        """
        want = torch.float32 if self.weights.mode == 2 else torch.int64
        if not (classes.is_contiguous() and classes.dtype == want and uniforms.is_contiguous()):
            raise ValueError(f"classes must be contiguous {want} and uniforms contiguous")
        stepper, b, k = self.weights.stepper, self.batch, self.weights.classes
        chunk = stepper.chunk_steps(b)
        draws = self.weights.draws
        t, run = 0, 16
        next_yield = min(total, yield_every)
        scratch = None
        while t < total:
            n = min(chunk, total - t, next_yield if t == 0 else total)  # the first block waits for no more
            with torch.inference_mode(), intra_op_threads(threads):
                proj = [p.contiguous() for p in stepper.project(spans(t, n))]
            if should_stop is not None and should_stop():  # the projection of a chunk may take a while
                yield t
                return
            i = 0
            while i < n:
                m = min(run, n - i, next_yield - t)
                logits = None
                if tap is not None and (tap.limit is None or t < tap.limit):
                    if scratch is None or scratch.shape[0] < m:
                        scratch = torch.empty(max(m, run), draws, b, k)
                    logits = scratch[:m]
                began = time.perf_counter()
                self.steps(proj, i, uniforms, temperature, classes, t, m, logits)
                took = time.perf_counter() - began
                if logits is not None:
                    tap.record_span(t, logits[:, 0, 0])
                if took < RUN_SECONDS[0] and m == run:
                    run = min(MAX_RUN_STEPS, run * 2)
                elif took > RUN_SECONDS[1]:
                    run = max(1, run // 2)
                i += m
                t += m
                cancelled = should_stop is not None and should_stop()
                if t == next_yield or cancelled:
                    yield t
                    if cancelled:
                        return
                    next_yield = min(total, t + yield_every)

    def logits(self, cond: Tensor, forced: Tensor) -> Tensor:
        """Teacher-forced: cond [B, T, C], forced classes [B, T] (dual: ``coarse * 256 + fine``) ->
        the logits of every step [T, draws, B, K] (as ``wavernn_step`` computes them)."""
        b, total, _ = cond.shape
        classes = forced.to(torch.int64).contiguous()
        out = torch.empty(total, self.weights.draws, b, self.weights.classes)
        with torch.inference_mode():
            proj = [p.contiguous() for p in self.weights.stepper.project(cond)]
        self.steps(proj, 0, None, 0.0, classes, 0, total, out, forced=True)
        return out


def native_weights(stepper: MulawStepper | DualStepper) -> NativeWeights:
    """The stepper's native weight layout, made once per stepper (steppers are rebuilt on weight changes)."""
    held = stepper.__dict__.get("_native_weights")
    if held is None:
        held = stepper.__dict__["_native_weights"] = NativeWeights(stepper)
    return held


def native_run(stepper: MulawStepper | DualStepper, batch: int, start_class: int) -> NativeRun | None:
    """A ``NativeRun`` for the stepper, or None when the library is unavailable or the weights are not CPU
    float32 (the caller then uses the torch stepper)."""
    lib = native_library()
    if lib is None:
        return None
    like = stepper.input_table
    if like.device.type != "cpu" or like.dtype != torch.float32:
        return None
    return NativeRun(native_weights(stepper), lib, batch, start_class)
