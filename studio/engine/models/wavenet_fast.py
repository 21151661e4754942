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

import math
from typing import TYPE_CHECKING

import torch

from studio.engine.models.fast_linear import PACKED_MIN_BATCH, Affine, intra_op_threads  # noqa: F401 (re-export)

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.wavenet import WaveNet


class StepperCancelled(Exception):
    """Raised by ``IncrementalWaveNet(..., should_stop=...)`` when the request was cancelled while the
    stepper was being built (packing a large folded batch's weights takes a noticeable time under load)."""


class IncrementalWaveNet:
    """A per-sample evaluator for one ``WaveNet`` and batch size (weights are snapshotted at creation).

    ``step(classes, biases)``: classes ``[B]`` int64 (the previous sample's mu-law class), biases a
    sequence of ``layers`` tensors ``[B, gate_channels]`` (see ``WaveNet.layer_biases``) -> logits
    ``[B, out_classes]``, a buffer that the next step may overwrite.

    The gate uses ``sigmoid(b) = (1 + tanh(b / 2)) / 2``: the sigmoid half of each gate's weights is
    halved here (``biases`` must be halved the same way, which ``gate_scale`` does: the caller passes
    ``biases * gate_scale`` or lets ``step`` do it), so one ``tanh_`` covers the whole gate and
    ``tanh(a) * (1 + tanh(b/2))`` = 2z is one ``addcmul``; the factor 2 is folded into the residual and
    skip weights. With ``B >= 2`` the products run through oneDNN (``fast_linear.Affine``: 2-4x faster
    than the BLAS for these shapes on this machine).

    ``should_stop``: polled after every layer's weights are prepared; when it returns True the
    constructor raises ``StepperCancelled`` (so a cancel lands during setup too). ``projection`` is
    the model's packed conditioning projection (``WaveNet.cond_projection``), made once here.
    """

    def __init__(self, model: WaveNet, batch: int, should_stop=None) -> None:
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
        # per gate channel: 1 on the tanh half, 1/2 on the sigmoid half (see the class doc)
        self.gate_scale = torch.cat([torch.ones(gh), torch.full((g - gh,), 0.5)]).to(device=device, dtype=dtype)

        self.rings: list[torch.Tensor] = []
        self.slots: list[list[torch.Tensor]] = []  # per layer, per slot: the [B, k*R] tap matrix
        self.parts: list[list[list[torch.Tensor]]] = []  # per layer, per slot, per part: a [B, R] view
        for d in cfg.dilations:
            ring = torch.zeros(d, batch, k, r, device=device, dtype=dtype)
            self.rings.append(ring)
            self.slots.append([slot.view(batch, k * r) for slot in ring.unbind(0)])
            self.parts.append([list(slot.unbind(1)) for slot in ring.unbind(0)])

        width = gh + 1  # each layer's 2z plus a constant 1 that carries the 1x1 biases
        self.zs3 = torch.ones(cfg.layers, batch, width, device=device, dtype=dtype)  # layer-major
        self.gates = torch.empty(cfg.layers, batch, g, device=device, dtype=dtype)
        self.onednn = batch >= PACKED_MIN_BATCH
        skip_rows = []
        self.plan = []
        for i, layer in enumerate(model.layers):
            if should_stop is not None and should_stop():
                raise StepperCancelled
            d = cfg.dilations[i]
            w = layer.dilated.weight.detach() * self.gate_scale.view(g, 1, 1)  # [G, R, k]
            # tap k-1-m multiplies the input m*d samples ago
            taps = [w[:, :, k - 1 - m].t() for m in range(k)]  # [R, G] per lag m
            # rotation p: part q of the slot holds the input (p - q) % k dilations ago
            rotations = [torch.cat([taps[(p - q) % k] for q in range(k)]).contiguous() for p in range(k)]
            w_out = layer.out.weight.detach()[:, :, 0]  # [R + S, Gh]
            b_out = layer.out.bias.detach()
            res_ext = torch.cat([w_out[:r].t() * 0.5, b_out[:r].unsqueeze(0)]) * res_scale  # [Gh+1, R]
            skip_rows.append(torch.cat([w_out[r:].t() * 0.5, b_out[r:].unsqueeze(0)]) * skip_scale)  # [Gh+1, S]
            gate = self.gates[i]
            z_ext = self.zs3[i]
            last = i + 1 == cfg.layers
            if self.onednn:
                rotations = [Affine(rot) for rot in rotations]
                res_ext = Affine(res_ext)
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
                    res_ext.contiguous() if isinstance(res_ext, torch.Tensor) else res_ext,
                    None if last else cfg.dilations[i + 1],
                    None if last else self.parts[i + 1],
                )
            )
        self.k = k
        self.gh = gh
        self.skip_weight = torch.cat(skip_rows).contiguous()  # [L*(Gh+1), S]
        self.post1_w = model.post1.weight.detach()[:, :, 0].t().contiguous()
        self.post1_b = model.post1.bias.detach().clone()
        self.post2_w = model.post2.weight.detach()[:, :, 0].t().contiguous()
        self.post2_b = model.post2.bias.detach().clone()
        self.projection = model.cond_projection()
        self.skip_map = Affine(self.skip_weight)
        self.post1 = Affine(self.post1_w, self.post1_b)
        self.post2 = Affine(self.post2_w, self.post2_b)
        self.res_scale = res_scale
        # B = 1: the layer-major buffer already is the [1, L*(Gh+1)] matrix of the skip product
        self.zs = self.zs3.view(1, cfg.layers * width) if batch == 1 else None
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
        """One sample for every stream. ``biases[i]`` [B, G]: layer ``i``'s conditioning biases as
        ``WaveNet.layer_biases`` gives them (``step`` applies ``gate_scale``; see ``step_scaled``)."""
        return self.step_scaled(classes, [b * self.gate_scale for b in biases])

    def step_scaled(self, classes: torch.Tensor, biases) -> torch.Tensor:
        """``step`` with biases already multiplied by ``gate_scale`` (one product per block, not per step)."""
        t, k = self.t, self.k
        d0 = self.plan[0][0]
        h = self.parts[0][t % d0][(t // d0) % k]
        torch.index_select(self.embedding, 0, classes, out=h)
        if self.onednn:
            self._layers_onednn(t, k, h, biases)
            b = self.batch
            zs = self.zs3.transpose(0, 1).reshape(b, -1)
            skip = self.skip_map(zs).relu_()
            self.t = t + 1
            return self.post2(self.post1(skip).relu_())
        addmm, addcmul = torch.addmm, torch.addcmul
        for i, (d, slots, rotations, gate, g_tanh, g_sig, z, z_ext, res_ext, d_next, parts_next) in enumerate(
            self.plan
        ):
            addmm(biases[i], slots[t % d], rotations[(t // d) % k], out=gate)
            gate.tanh_()
            addcmul(g_tanh, g_tanh, g_sig, out=z)  # 2z = tanh(a) * (1 + tanh(b / 2))
            if d_next is not None:
                out = parts_next[t % d_next][(t // d_next) % k]
                addmm(h, z_ext, res_ext, beta=self.res_scale, out=out)
                h = out
        torch.mm(self.zs, self.skip_weight, out=self.skip).relu_()
        addmm(self.post1_b, self.skip, self.post1_w, out=self.hidden).relu_()
        addmm(self.post2_b, self.hidden, self.post2_w, out=self.logits)
        self.t = t + 1
        return self.logits

    def _layers_onednn(self, t: int, k: int, h: torch.Tensor, biases) -> None:
        add, addcmul = torch.add, torch.addcmul
        gh = self.gh
        for i, (d, slots, rotations, _, _, _, z, z_ext, res_ext, d_next, parts_next) in enumerate(self.plan):
            gate = rotations[(t // d) % k](slots[t % d], biases[i]).tanh_()
            g_tanh = gate[:, :gh]
            addcmul(g_tanh, g_tanh, gate[:, gh:], out=z)
            if d_next is not None:
                out = parts_next[t % d_next][(t // d_next) % k]
                add(res_ext(z_ext), h, alpha=self.res_scale, out=out)
                h = out
