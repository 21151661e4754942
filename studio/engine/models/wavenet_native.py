"""One-stream WaveNet steps compiled to native code: the step loop without per-op dispatch.

Why: at batch 1 a WaveNet step is ~120 small torch ops (reference size: 24 layers), and their Python
and dispatcher overhead is most of its time (perf.md items 10-12). ``wavenet_native.c`` runs whole
blocks of steps (gate products, tanh gate, residual and skip products, output network, sampling) in one
C call on weights laid out once by ``NativeWaveNet``.

Build: at first use the C file is compiled with the system C compiler (``cc``/``gcc``, ``-O3
-march=native``, about a second) into ``~/.cache/waveform-studio/native/`` (or
``$WAVEFORM_STUDIO_CACHE/native``), named by a hash of the source, flags and machine, and reused
afterwards. When no compiler is found, the build fails or ``STUDIO_NO_NATIVE=1`` is set,
``native_library()`` returns None (logged once) and callers use the torch stepper instead.

Equality: the same function as ``IncrementalWaveNet`` to float32 rounding (``tests/test_fastpaths.py``).
CPU float32 only. Threads: a ``NativeWaveNet`` belongs to the thread that made it; the C call
releases the GIL (ctypes), so other Python threads run meanwhile.
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


def native_library() -> ctypes.CDLL | None:
    """The loaded step library, building it on first call; None when unavailable (see the module doc)."""
    with _lock:
        if "lib" not in _state:
            _state["lib"] = load_library("WaveNet", SOURCE, _declare)
        return _state["lib"]  # type: ignore[return-value]


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


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
        rotations = [torch.stack([rot for rot in plan[2]]) for plan in ref.plan]  # [k, k*R, G]
        residuals = [plan[8] for plan in ref.plan[:-1]] + [torch.zeros(gh + 1, r)]
        weights = [ref.embedding, *rotations, *residuals, ref.skip_weight, ref.post1_w, ref.post1_b,
                   ref.post2_w, ref.post2_b]
        w_off, pos = [], 0
        for t in weights:
            w_off.append(pos)
            pos += t.numel()
        self.weights = torch.cat([t.detach().reshape(-1).float() for t in weights]).contiguous()
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
