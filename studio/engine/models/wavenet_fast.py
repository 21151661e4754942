"""Incremental WaveNet evaluation: one sample per step, O(layers) work, no recomputation of the past.

A dilated causal convolution of kernel ``k`` and dilation ``d`` needs its input at times
``t, t-d, ..., t-(k-1)d``. Each layer keeps a ring tensor ``[d, B, k, R]`` of its recent inputs: slot
``t % d`` holds the ``k`` inputs of the times congruent to ``t`` modulo ``d`` and part
``(t // d) % k`` of that slot receives the input of time ``t``, overwriting the one of ``t - k*d`` that
is no longer needed. The slot, seen as a ``[B, k*R]`` matrix, therefore holds exactly the
convolution's taps, in an order that rotates with ``(t // d) % k``; the layer keeps one weight matrix
per rotation, so the whole dilated convolution is ONE matmul (no copies, no concatenation). The
previous layer writes its output straight into that part. Rings start at zero, which is the zero
left padding of the full (training) convolution, so both paths compute the same function
(``tests/test_wavenet.py`` checks this to 1e-5).

Per step and layer the work is: the gate matmul (biases from the conditioning added by the same
call), in-place tanh and sigmoid, their product written into the layer's slice of one wide ``zs``
buffer, and one matmul with the residual weights (bias and the sqrt(1/2) residual scale folded in
through a constant-1 column of ``zs``). All skip connections are then one matmul of ``zs`` with the
stacked skip weights. Conditioning biases (mel, speaker and conv biases) are precomputed per block by
the caller, so a step only indexes them. Everything is preallocated; use inside ``torch.inference_mode``.

Threads: a stepper belongs to the thread that made it.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.wavenet import WaveNet


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """Set torch's intra-op thread count for the ``with`` body (None: leave it), then restore it."""
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


class IncrementalWaveNet:
    """A per-sample evaluator for one ``WaveNet`` and batch size (weights are snapshotted at creation).

    ``step(classes, biases)``: classes ``[B]`` int64 (the previous sample's mu-law class), biases a
    sequence of ``layers`` tensors ``[B, gate_channels]`` (see ``WaveNet.layer_biases``) -> logits
    ``[B, out_classes]``, a buffer that the next step overwrites.
    """

    def __init__(self, model: WaveNet, batch: int) -> None:
        cfg = model.config
        weight = model.embed.weight
        device, dtype = weight.device, weight.dtype
        self.batch = batch
        self.layers = cfg.layers
        r, g, s = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels
        gh = g // 2
        k = cfg.kernel_size
        res_scale = math.sqrt(0.5)
        skip_scale = math.sqrt(1.0 / cfg.layers)
        self.embedding = weight.detach().contiguous()

        self.rings: list[torch.Tensor] = []
        self.slots: list[list[torch.Tensor]] = []  # per layer, per slot: the [B, k*R] tap matrix
        self.parts: list[list[list[torch.Tensor]]] = []  # per layer, per slot, per part: a [B, R] view
        for d in cfg.dilations:
            ring = torch.zeros(d, batch, k, r, device=device, dtype=dtype)
            self.rings.append(ring)
            self.slots.append([slot.view(batch, k * r) for slot in ring.unbind(0)])
            self.parts.append([list(slot.unbind(1)) for slot in ring.unbind(0)])

        width = gh + 1  # each layer's z plus a constant 1 that carries the 1x1 biases
        self.zs = torch.ones(batch, cfg.layers * width, device=device, dtype=dtype)
        self.gates = torch.empty(cfg.layers, batch, g, device=device, dtype=dtype)
        skip_rows = []
        self.plan = []
        for i, layer in enumerate(model.layers):
            d = cfg.dilations[i]
            w = layer.dilated.weight.detach()  # [G, R, k]; tap k-1-m multiplies the input m*d samples ago
            taps = [w[:, :, k - 1 - m].t() for m in range(k)]  # [R, G] per lag m
            # rotation p: part q of the slot holds the input (p - q) % k dilations ago
            rotations = [torch.cat([taps[(p - q) % k] for q in range(k)]).contiguous() for p in range(k)]
            w_out = layer.out.weight.detach()[:, :, 0]  # [R + S, Gh]
            b_out = layer.out.bias.detach()
            res_ext = torch.cat([w_out[:r].t(), b_out[:r].unsqueeze(0)]) * res_scale  # [Gh+1, R]
            skip_rows.append(torch.cat([w_out[r:].t(), b_out[r:].unsqueeze(0)]) * skip_scale)  # [Gh+1, S]
            gate = self.gates[i]
            z_ext = self.zs[:, i * width : (i + 1) * width]
            last = i + 1 == cfg.layers
            self.plan.append(
                (
                    d,
                    self.slots[i],
                    rotations,
                    gate,
                    gate[:, :gh],
                    gate[:, gh:],
                    z_ext[:, :gh],
                    z_ext,
                    res_ext.contiguous(),
                    None if last else cfg.dilations[i + 1],
                    None if last else self.parts[i + 1],
                )
            )
        self.k = k
        self.skip_weight = torch.cat(skip_rows).contiguous()  # [L*(Gh+1), S]
        self.post1_w = model.post1.weight.detach()[:, :, 0].t().contiguous()
        self.post1_b = model.post1.bias.detach().clone()
        self.post2_w = model.post2.weight.detach()[:, :, 0].t().contiguous()
        self.post2_b = model.post2.bias.detach().clone()
        self.res_scale = res_scale
        self.skip = torch.empty(batch, s, device=device, dtype=dtype)
        self.hidden = torch.empty(batch, s, device=device, dtype=dtype)
        self.logits = torch.empty(batch, cfg.out_classes, device=device, dtype=dtype)
        self.t = 0

    def reset(self) -> None:
        """Forget the past (all rings back to zero, time back to 0)."""
        for ring in self.rings:
            ring.zero_()
        self.t = 0

    def step(self, classes: torch.Tensor, biases: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        t, k = self.t, self.k
        d0 = self.plan[0][0]
        h = self.parts[0][t % d0][(t // d0) % k]
        torch.index_select(self.embedding, 0, classes, out=h)
        addmm, mul = torch.addmm, torch.mul
        for i, (d, slots, rotations, gate, g_tanh, g_sig, z, z_ext, res_ext, d_next, parts_next) in enumerate(
            self.plan
        ):
            addmm(biases[i], slots[t % d], rotations[(t // d) % k], out=gate)
            g_tanh.tanh_()
            g_sig.sigmoid_()
            mul(g_tanh, g_sig, out=z)
            if d_next is not None:
                out = parts_next[t % d_next][(t // d_next) % k]
                addmm(h, z_ext, res_ext, beta=self.res_scale, out=out)
                h = out
        torch.mm(self.zs, self.skip_weight, out=self.skip).relu_()
        addmm(self.post1_b, self.skip, self.post1_w, out=self.hidden).relu_()
        addmm(self.post2_b, self.hidden, self.post2_w, out=self.logits)
        self.t = t + 1
        return self.logits
