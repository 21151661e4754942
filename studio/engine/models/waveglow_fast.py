"""WaveGlow's inference fast path: the coupling networks run from a snapshot of plain weights.

Same function as ``WN.forward`` (``tests/test_fastpaths.py`` compares them), arranged for speed:

- weights are read once (weight norm evaluated once, not on every call) and reused until a parameter
  changes (``WaveGlow.fast_couplings`` keys the snapshot on parameter versions);
- every 1×1 convolution runs through oneDNN (``pointwise``): for a one-tap kernel torch's CPU dispatcher
  picks its generic im2col + GEMM kernel when single-threaded, which measured 1.5–2.6× slower here than
  oneDNN on the same product; a dilation on a one-tap kernel changes nothing but selects oneDNN;
- the conditioning projection of layer ``i`` is computed right where layer ``i`` uses it (its slice of
  ``cond_layer``), so the [2·C·L, T/G] projection of all layers never exists at once: less memory and
  the product stays in cache;
- residual, skip and gate arithmetic happen in place.

Threads: a snapshot is read-only; it may be used from any thread that runs the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio.engine.models.waveglow_flow import WN


class InferenceCancelled(Exception):
    """Raised inside ``FastWN.__call__`` / ``WaveGlow.infer`` when their ``should_stop`` turns true."""


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1×1 convolution: x [B, C_in, T], weight [C_out, C_in, 1] → [B, C_out, T].

    ``dilation=2`` is a no-op for one tap; it steers torch's CPU dispatch to oneDNN (see module doc).
    """
    return F.conv1d(x, weight, bias, dilation=2)


class FastWN:
    """A read-only snapshot of one ``WN`` (its current effective weights); ``fast(x0, cond)`` = ``wn(x0, cond)``.

    x0 [B, n_in, T/G], cond [B, n_cond, T/G] → [B, 2·n_in, T/G] (shift, then log-scale).
    ``should_stop`` (optional callable) is polled before every layer; when it returns True the call
    raises ``InferenceCancelled`` (a reference-size coupling over a chunk can take a few hundred ms on
    a loaded machine; a layer about 1/8 of that).
    """

    def __init__(self, wn: WN) -> None:
        c, layers = wn.n_channels, wn.n_layers
        self.channels = c
        with torch.no_grad():
            self.start = (wn.start.weight.detach(), wn.start.bias.detach())
            cond_w, cond_b = wn.cond_layer.weight.detach(), wn.cond_layer.bias.detach()
            self.cond = [
                (cond_w[2 * c * i : 2 * c * (i + 1)].contiguous(), cond_b[2 * c * i : 2 * c * (i + 1)].contiguous())
                for i in range(layers)
            ]
            self.dilated = [
                (conv.weight.detach(), conv.bias.detach(), conv.dilation[0], conv.padding[0]) for conv in wn.in_layers
            ]
            self.res_skip = [(conv.weight.detach(), conv.bias.detach()) for conv in wn.res_skip_layers]
            self.end = (wn.end.weight.detach(), wn.end.bias.detach())

    def __call__(self, x0: torch.Tensor, cond: torch.Tensor, should_stop=None) -> torch.Tensor:
        c = self.channels
        h = pointwise(x0, *self.start)
        last = len(self.dilated) - 1
        skip = None
        for i, ((w, b, dilation, padding), (cw, cb), (rw, rb)) in enumerate(
            zip(self.dilated, self.cond, self.res_skip, strict=True)
        ):
            if should_stop is not None and should_stop():
                raise InferenceCancelled
            acts = F.conv1d(h, w, b, dilation=dilation, padding=padding)
            acts += pointwise(cond, cw, cb)
            gated = torch.tanh(acts[:, :c])
            gated *= torch.sigmoid(acts[:, c:])
            res_skip = pointwise(gated, rw, rb)
            if i < last:
                h = h + res_skip[:, :c]
                out = res_skip[:, c:]
            else:
                out = res_skip
            skip = out if skip is None else skip.add_(out)
        return pointwise(skip, *self.end)
