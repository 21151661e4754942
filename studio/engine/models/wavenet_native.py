"""One-stream WaveNet steps compiled to native code: the step loop without per-op dispatch.

Why: at batch 1 a WaveNet step is ~120 small torch ops (reference size: 24 layers), and their Python
and dispatcher overhead is most of its time (perf.md items 10-12). ``wavenet_native.c`` runs whole
blocks of steps (gate products, tanh gate, residual and skip products, output network, sampling) in one
C call on weights laid out once by ``NativeWaveNet``.

Build: at first use the C file is compiled with the system C compiler (``cc``/``gcc``, ``-O3
-march=native``, about a second) into ``~/.cache/waveform-studio/native/`` (or
``$WAVEFORM_STUDIO_CACHE/native``), named by a hash of the source, the headers it includes (native_kernels.h), flags and machine, and reused
afterwards. When no compiler is found, the build fails or ``STUDIO_NO_NATIVE=1`` is set,
``native_library()`` returns None (logged once) and callers use the torch stepper instead.

Folded generation (``NativeFoldedWaveNet``, used by ``wavenet_fold``): B folds stepped together, the
weights read once per step for up to 8 folds at a time (register-blocked products over weight matrices
stored in 32-column panels, prefetched ahead), the conditioning projection done inside the gate products,
and the folds split among worker threads (pthreads, one join per call, no spinning).

Equality: the same function as ``IncrementalWaveNet`` to float32 rounding (``tests/test_fastpaths.py``).
CPU float32 only. Threads: a ``NativeWaveNet`` / ``NativeFoldedWaveNet`` belongs to the thread that made
it; the C call releases the GIL (ctypes), so other Python threads run meanwhile.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.engine.models.native_build import ENV_DISABLE, find_compiler, load_library  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.wavenet import WaveNet

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("wavenet_native.c")

_lock = threading.Lock()
_state: dict[str, object] = {}


def _declare(lib: ctypes.CDLL) -> None:
    fn = lib.wavenet_steps
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    folded = lib.wavenet_fold_steps
    folded.restype = ctypes.c_int64
    folded.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]


def native_library() -> ctypes.CDLL | None:
    """The loaded step library, building it on first call; None when unavailable (see the module doc)."""
    with _lock:
        if "lib" not in _state:
            _state["lib"] = load_library("WaveNet", SOURCE, _declare)
        return _state["lib"]  # type: ignore[return-value]


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _step_weights(ref, r: int, gh: int) -> list[torch.Tensor]:
    """The weight tensors of the C loops, in the order of their offsets (see ``wavenet_native.c``), from a
    batch-1 ``IncrementalWaveNet`` (gate scale and residual / skip scales already folded in)."""
    rotations = [torch.stack([rot for rot in plan[2]]) for plan in ref.plan]  # [k, k*R, G]
    residuals = [plan[8] for plan in ref.plan[:-1]] + [torch.zeros(gh + 1, r)]
    return [ref.embedding, *rotations, *residuals, ref.skip_weight, ref.post1_w, ref.post1_b, ref.post2_w, ref.post2_b]


def pack_weights(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """One contiguous float32 buffer holding ``tensors`` one after the other, and each one's offset."""
    offsets, pos = [], 0
    for t in tensors:
        offsets.append(pos)
        pos += t.numel()
    return torch.cat([t.detach().reshape(-1).float() for t in tensors]).contiguous(), offsets


class NativeWaveNet:
    """Batch-1 WaveNet stepper running in C (see the module doc); weights snapshotted at creation.

    ``run(classes, biases, noise, t0, n)``: classes int64 ``[>= t0+n+1]`` (``classes[t0]`` is the
    previous sample's class; ``classes[t0+1 : t0+n+1]`` are written), biases ``[n, layers, G]``
    float32 (``WaveNet.layer_biases`` times ``gate_scale``), noise ``[n, C]`` or None (argmax).
    ``logits(classes, biases)`` runs teacher-forced and returns every step's logits ``[n, C]``.
    Time advances by the steps run; ``t`` is the next step's time. ``should_stop``: as for
    ``IncrementalWaveNet`` (polled while the weights are prepared).
    """

    def __init__(self, model: WaveNet, lib: ctypes.CDLL, should_stop=None) -> None:
        from studio.engine.models.wavenet_fast import IncrementalWaveNet

        # the same weight transforms as the torch stepper (raises StepperCancelled like it)
        ref = IncrementalWaveNet(model, 1, should_stop=should_stop)
        cfg = model.config
        if ref.embedding.device.type != "cpu" or ref.embedding.dtype != torch.float32:
            raise ValueError("the native WaveNet step loop runs on CPU float32 weights only")
        self.lib = lib
        r, g, s, c, k = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.out_classes, cfg.kernel_size
        gh = g // 2
        self.gate_scale = ref.gate_scale
        self.projection = ref.projection
        self.out_classes = c
        self.weights, w_off = pack_weights(_step_weights(ref, r, gh))
        sizes = [d * k * r for d in cfg.dilations] + [g, cfg.layers * (gh + 1), s, s, c]
        s_off, pos = [], 0
        for n in sizes:
            s_off.append(pos)
            pos += n
        self.state = torch.zeros(pos)
        self._zs = self.state[s_off[cfg.layers + 1] : s_off[cfg.layers + 1] + cfg.layers * (gh + 1)].view(
            cfg.layers, gh + 1
        )
        self._zs[:, gh] = 1.0
        self._rings = self.state[: s_off[cfg.layers]]
        self._bias_width = cfg.layers * g
        self.meta = torch.tensor([cfg.layers, r, g, s, c, k, *cfg.dilations, *w_off, *s_off], dtype=torch.int64)
        self.t = 0

    def reset(self) -> None:
        self._rings.zero_()
        self.t = 0

    def run(self, classes: torch.Tensor, biases: torch.Tensor, noise: torch.Tensor | None, t0: int, n: int) -> None:
        self._call(classes, biases, noise, t0, n, None, forced=False)

    def logits(self, classes: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: ``classes [n]`` are the inputs of steps ``t .. t+n-1``; logits ``[n, C]``."""
        n = classes.shape[0]
        out = torch.empty(n, self.out_classes)
        padded = torch.cat([classes.to(torch.int64), classes.new_zeros(1)]).contiguous()
        self._call(padded, biases, None, 0, n, out, forced=True)
        return out

    def _call(self, classes, biases, noise, t0, n, logits_out, forced) -> None:
        if n <= 0:
            return
        if not biases.is_contiguous():
            biases = biases.contiguous()
        if biases.dtype != torch.float32 or biases.numel() != n * self._bias_width:
            raise ValueError(f"biases must be float32 [n={n}, layers, gate_channels], got {tuple(biases.shape)}")
        if noise is not None and not noise.is_contiguous():
            noise = noise.contiguous()
        step_time = self.t
        if classes.dtype != torch.int64 or not classes.is_contiguous():
            raise ValueError("classes must be a contiguous int64 tensor")
        # the C loop reads classes[t] for ring time t: hand it a view that starts t0 - step_time early
        base = classes.data_ptr() + (t0 - step_time) * 8
        self.lib.wavenet_steps(
            self.meta.data_ptr(), self.weights.data_ptr(), self.state.data_ptr(), biases.data_ptr(),
            _ptr(noise), base, step_time, n, _ptr(logits_out), int(forced),
        )
        self.t = step_time + n


def fold_panels(weight: torch.Tensor) -> torch.Tensor:
    """A matrix ``[Kd, N]`` in the column-panel order of the folded C products (``gemm_rows`` in
    ``wavenet_native.c``): 32-column blocks ``[Kd, 32]`` one after the other, then 16-column blocks, then
    the last ``N % 16`` columns as one ``[Kd, N % 16]`` block; the same number of floats."""
    n = weight.shape[1]
    wide, narrow = n - n % 32, n - n % 16
    parts = [weight[:, i : i + 32] for i in range(0, wide, 32)] + [weight[:, i : i + 16] for i in range(wide, narrow, 16)]
    if narrow < n:
        parts.append(weight[:, narrow:])
    return torch.cat([p.contiguous().reshape(-1) for p in parts])


def default_fold_threads() -> int:
    """Worker threads of the folded C loop when the request names none: torch's intra-op setting (the
    process's, or ``studio bench --threads N``) while the machine has an idle core, else 1 (the policy of
    ``fast_linear.auto_threads``, decided once per generation).

    Why: the folds are split statically among the workers and every call ends with a join, so a worker
    descheduled by other busy processes holds up the call. Measured at reference size, 2 s, load 5.8 on 2
    cores: 2 workers (16 folds) 3.7-4.1 kHz against 6.0-6.9 kHz for 1 worker (8 folds); on idle cores two
    workers share the work nearly evenly."""
    from studio.engine.models.fast_linear import auto_threads

    return max(1, min(torch.get_num_threads(), auto_threads()))


class NativeFoldedWaveNet:
    """Batch-B WaveNet stepper in C for folded generation (see ``wavenet_native.c``, "Folded generation").

    The conditioning projection runs inside the C loop as part of each gate product (``cond`` rows of
    the upsampled conditioning, ``[n, B, cond_channels]``), so no per-step bias tensor is built;
    ``base`` holds the constant part (conv and projection biases and the speaker term, gate-scaled).
    ``run(classes, cond, noise, t0, n)``: classes int64 ``[T+1, B]`` (row ``t`` the folds' inputs at
    time ``t``; rows ``t0+1 .. t0+n`` are written), noise ``[n, B, C]`` or None (argmax).
    ``logits(classes, cond)`` runs teacher-forced (``classes [n, B]``) and returns ``[n, B, C]``.
    ``threads``: worker threads (the folds' rows are split among them; None: ``default_fold_threads``).
    Weights are snapshotted at creation; ``should_stop`` as for ``IncrementalWaveNet``.
    """

    def __init__(self, model: WaveNet, lib: ctypes.CDLL, batch: int, speaker: torch.Tensor | None = None,
                 threads: int | None = None, should_stop=None) -> None:
        from studio.engine.models.wavenet_fast import IncrementalWaveNet

        ref = IncrementalWaveNet(model, 1, should_stop=should_stop)
        cfg = model.config
        if ref.embedding.device.type != "cpu" or ref.embedding.dtype != torch.float32:
            raise ValueError("the native WaveNet step loop runs on CPU float32 weights only")
        self.lib = lib
        self.batch = int(batch)
        self.threads = default_fold_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        r, g, s, c, k = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.out_classes, cfg.kernel_size
        gh, layers = g // 2, cfg.layers
        self.out_classes = c
        scale = ref.gate_scale
        tensors = _step_weights(ref, r, gh)
        # every product's matrix in column panels (rotations, residuals, skip, post1, post2; the embedding
        # and the bias vectors stay as they are)
        for i in range(1, 1 + 2 * layers):
            m = tensors[i]
            tensors[i] = torch.stack([fold_panels(rot) for rot in m]) if m.dim() == 3 else fold_panels(m)
        for i in (1 + 2 * layers, 2 + 2 * layers, 4 + 2 * layers):
            tensors[i] = fold_panels(tensors[i])
        with torch.no_grad():
            base = torch.cat([layer.dilated.bias.detach() for layer in model.layers]).view(layers, g)
            self.cond_channels = 0
            if model.cond_proj is not None:
                proj_w = model.cond_proj.weight.detach()[:, :, 0].view(layers, g, -1)  # [L, G, Cc]
                self.cond_channels = proj_w.shape[-1]
                tensors += [fold_panels((proj_w[i] * scale.view(g, 1)).t()) for i in range(layers)]  # [Cc, G]
                base = base + model.cond_proj.bias.detach().view(layers, g)
            base = base.unsqueeze(0).expand(self.batch, layers, g)
            if speaker is not None and model.speaker_embed is not None:
                base = base + model.speaker_proj(model.speaker_embed(speaker)).view(self.batch, layers, g)
            self.base = (base * scale).contiguous()  # [B, L, G]
        self.weights, w_off = pack_weights(tensors)
        if self.cond_channels == 0:
            w_off += [0] * layers
        sizes = [d * self.batch * k * r for d in cfg.dilations]
        sizes += [self.batch * n for n in (g, layers * (gh + 1), s, s, c)]
        s_off, pos = [], 0
        for n in sizes:
            s_off.append(pos)
            pos += n
        self.state = torch.zeros(pos)
        zs = self.state[s_off[layers + 1] : s_off[layers + 1] + self.batch * layers * (gh + 1)]
        zs.view(self.batch, layers, gh + 1)[:, :, gh] = 1.0
        self._rings = self.state[: s_off[layers]]
        self.meta = torch.tensor(
            [layers, r, g, s, c, k, self.cond_channels, self.batch, *cfg.dilations, *w_off, *s_off], dtype=torch.int64
        )
        self.t = 0

    def reset(self) -> None:
        self._rings.zero_()
        self.t = 0

    def run(self, classes: torch.Tensor, cond: torch.Tensor | None, noise: torch.Tensor | None, t0: int, n: int,
            logits_out: torch.Tensor | None = None) -> None:
        """``n`` steps from ``classes[t0]``; ``logits_out [n', rows, C]`` (optional, ``n' >= n``) receives the
        logits of the first ``rows`` folds (the distribution view uses fold 0's)."""
        self._call(classes, cond, noise, t0, n, logits_out, forced=False)

    def logits(self, classes: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Teacher-forced: ``classes [n, B]`` are the inputs of steps ``t .. t+n-1``; logits ``[n, B, C]``."""
        n = classes.shape[0]
        out = torch.empty(n, self.batch, self.out_classes)
        padded = torch.cat([classes.to(torch.int64), classes.new_zeros(1, self.batch)]).contiguous()
        self._call(padded, cond, None, 0, n, out, forced=True)
        return out

    def _call(self, classes, cond, noise, t0, n, logits_out, forced) -> None:
        if n <= 0:
            return
        b = self.batch
        if classes.dtype != torch.int64 or not classes.is_contiguous() or classes.shape[-1] != b:
            raise ValueError(f"classes must be a contiguous int64 tensor [T, {b}]")
        if classes.shape[0] < t0 + n + 1:
            raise ValueError(f"classes has {classes.shape[0]} rows, steps {t0}..{t0 + n - 1} need {t0 + n + 1}")
        if self.cond_channels:
            if cond is None or tuple(cond.shape) != (n, b, self.cond_channels) or cond.dtype != torch.float32:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must be float32 [n={n}, {b}, {self.cond_channels}], got {got}")
            cond = cond.contiguous()
        else:
            cond = None
        if noise is not None:
            if tuple(noise.shape) != (n, b, self.out_classes):
                raise ValueError(f"noise must be [n={n}, {b}, {self.out_classes}], got {tuple(noise.shape)}")
            noise = noise.contiguous()
        rows = 0
        if logits_out is not None:
            rows = logits_out.shape[1]
            if not logits_out.is_contiguous() or logits_out.shape[0] < n or logits_out.shape[2] != self.out_classes:
                raise ValueError(f"logits_out must be a contiguous [>= {n}, rows, {self.out_classes}] tensor")
        step_time = self.t
        # the C loop reads classes[t * B + fold] for ring time t: a view that starts t0 - step_time rows early
        base = classes.data_ptr() + (t0 - step_time) * b * 8
        self.lib.wavenet_fold_steps(
            self.meta.data_ptr(), self.weights.data_ptr(), self.state.data_ptr(), self.base.data_ptr(), _ptr(cond),
            _ptr(noise), base, step_time, n, self.threads, _ptr(logits_out), rows, int(forced),
        )
        self.t = step_time + n
