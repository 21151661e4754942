"""Random tiny autoregressive models made to behave like trained ones in one respect: their softmax
favours classes near a centre (small excitations), so generated signals stay inside [-1, 1]."""

from __future__ import annotations

import torch


def favour_small_classes(output: torch.nn.Module, centre: int, curvature: float) -> None:
    """Scale the output layer's weights by 0.3 and set its bias to ``-curvature * (k - centre)**2`` over
    classes ``k`` (in place; ``output`` is an ``nn.Linear`` or a 1x1 ``nn.Conv1d`` with one bias per class)."""
    with torch.no_grad():
        k = torch.arange(output.bias.shape[0], dtype=torch.float32)
        output.weight.mul_(0.3)
        output.bias.copy_(-curvature * (k - centre) ** 2)
