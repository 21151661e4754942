"""WaveRNN's conditioning network: a mel residual network and an upsampling network.

The structure follows the widely used fatchord WaveRNN layout (module names match its checkpoints,
so an importer can map them one to one):

- ``MelResNet``: a valid 1-D convolution over ``2 * pad + 1`` frames, batch norm, ReLU, residual
  blocks of 1x1 convolutions, a 1x1 output convolution -> ``res_out_dims`` auxiliary features per frame.
- ``UpsampleNetwork``: stretches the mel to the sample rate in stages (repeat each step ``scale``
  times, then smooth with a ``2 * scale + 1`` wide moving-average-initialised convolution; both
  computed together at the low rate by ``stretch_and_smooth``), and
  stretches the auxiliary features by the whole hop (plain repetition).

Frame alignment: frame ``t`` covers samples ``[t * hop, (t + 1) * hop)`` (the feature profile's
convention), so after upsampling, sample ``n`` is conditioned on frame ``n // hop`` (plus the
smoothing of the convolutions and ``pad`` frames of context on both sides).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """1x1 conv -> batch norm -> ReLU -> 1x1 conv -> batch norm, plus the input. Shape [B, dims, frames]."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.conv2 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.batch_norm1 = nn.BatchNorm1d(dims)
        self.batch_norm2 = nn.BatchNorm1d(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.batch_norm1(self.conv1(x)))
        return x + self.batch_norm2(self.conv2(y))


class MelResNet(nn.Module):
    """Mel frames with context -> auxiliary features per frame.

    Input [B, n_mels, frames + 2 * pad] -> output [B, res_out_dims, frames] (the first convolution is
    valid, ``2 * pad + 1`` frames wide, so it consumes the ``pad`` context frames on each side).
    """

    def __init__(self, res_blocks: int, n_mels: int, compute_dims: int, res_out_dims: int, pad: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(n_mels, compute_dims, kernel_size=2 * pad + 1, bias=False)
        self.batch_norm = nn.BatchNorm1d(compute_dims)
        self.layers = nn.ModuleList(ResBlock(compute_dims) for _ in range(res_blocks))
        self.conv_out = nn.Conv1d(compute_dims, res_out_dims, kernel_size=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.batch_norm(self.conv_in(mel)))
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class Stretch2d(nn.Module):
    """Repeat every time step ``x_scale`` times (and every row ``y_scale`` times). [B, C, H, W] in and out."""

    def __init__(self, x_scale: int, y_scale: int = 1) -> None:
        super().__init__()
        self.x_scale = x_scale
        self.y_scale = y_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.y_scale != 1:
            x = x.repeat_interleave(self.y_scale, dim=2)
        if self.x_scale != 1:
            x = x.repeat_interleave(self.x_scale, dim=3)
        return x


def stretch_and_smooth(x: torch.Tensor, scale: int, weight: torch.Tensor) -> torch.Tensor:
    """``Stretch2d(scale)`` then the ``(1, 2 * scale + 1)`` smoothing convolution (zero padding ``scale``),
    computed at the low rate: the same function as the two layers, about 20x faster (and its backward
    far more so), because each output sample only ever sees three consecutive input steps.

    x [B, 1, H, W]; weight [1, 1, 1, 2 * scale + 1] (the convolution's) -> [B, 1, H, W * scale].
    Output sample ``j * scale + r`` is ``sum_d x[j + d] * taps[d, r]`` for d in -1, 0, 1, where
    ``taps[d, r]`` sums the kernel taps ``k`` with ``(r + k - scale) // scale == d``.
    """
    width = 2 * scale + 1
    kernel = weight.reshape(width)
    r = torch.arange(scale, device=x.device).view(scale, 1)
    k = torch.arange(width, device=x.device).view(1, width)
    offset = torch.div(r + k - scale, scale, rounding_mode="floor") + 1  # 0, 1, 2 for d = -1, 0, 1
    taps = torch.einsum("rkd,k->dr", F.one_hot(offset, 3).to(kernel.dtype), kernel)  # [3, scale]
    steps = x.shape[-1]
    padded = F.pad(x, (1, 1))
    neighbours = torch.stack([padded[..., d : d + steps] for d in range(3)], dim=-1)  # [..., W, 3]
    return (neighbours @ taps).flatten(-2)


class UpsampleNetwork(nn.Module):
    """Mel frames -> per-sample conditioning.

    Input: mel [B, n_mels, frames + 2 * pad] (``pad`` context frames on each side).
    Output: (mel_up [B, frames * hop, n_mels], aux [B, frames * hop, res_out_dims]), time-major last.
    ``hop`` is the product of ``scales``.
    """

    def __init__(
        self,
        scales: tuple[int, ...],
        n_mels: int,
        res_blocks: int,
        compute_dims: int,
        res_out_dims: int,
        pad: int,
    ) -> None:
        super().__init__()
        total = 1
        for s in scales:
            total *= s
        self.hop = total
        self.indent = pad * total
        self.resnet = MelResNet(res_blocks, n_mels, compute_dims, res_out_dims, pad)
        self.resnet_stretch = Stretch2d(total, 1)
        layers: list[nn.Module] = []
        for scale in scales:
            width = 2 * scale + 1
            conv = nn.Conv2d(1, 1, kernel_size=(1, width), padding=(0, scale), bias=False)
            with torch.no_grad():
                conv.weight.fill_(1.0 / width)
            layers += [Stretch2d(scale, 1), conv]
        self.up_layers = nn.ModuleList(layers)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux = self.resnet_stretch(self.resnet(mel).unsqueeze(1)).squeeze(1)
        m = mel.unsqueeze(1)
        for i in range(0, len(self.up_layers), 2):
            stretch, conv = self.up_layers[i], self.up_layers[i + 1]
            m = stretch_and_smooth(m, stretch.x_scale, conv.weight)
        m = m.squeeze(1)
        if self.indent:
            m = m[:, :, self.indent : -self.indent]
        return m.transpose(1, 2), aux.transpose(1, 2)
