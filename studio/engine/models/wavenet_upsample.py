"""WaveNet's local conditioning network: mel frames in, one conditioning vector per audio sample out.

Alignment: the feature front end makes ``T // hop`` frames for ``T`` samples, frame ``f`` covering
samples ``[f*hop, (f+1)*hop)``. The upsampler keeps that alignment: sample ``n`` is conditioned on
frame ``n // hop`` and on at most ``radius_frames`` frames either side of it, never more. The
conditioning is known in full before generation starts (a vocoder is given the whole mel), so a
bounded look at neighbouring frames is legitimate; an unbounded one would make chunked generation
inexact. ``radius_frames`` is exact, and ``span`` uses it to compute any slice of the output from a
slice of the frames, which keeps memory flat for long generations.

Structure: a context convolution over frames (kernel ``2*context+1``) to ``channels``, then one stage
per upsample scale ``s``:

- ``"transposed"``: ConvTranspose1d with kernel = stride = ``s`` (each output step comes from exactly
  one input step, so it adds nothing to the radius); initialised to nearest-neighbour repetition.
- ``"nearest"``: repeat each step ``s`` times, then a depthwise smoothing Conv1d with kernel ``2s+1``
  (initialised to a moving average); each stage widens the radius by one of its input steps.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLE_MODES = ("transposed", "nearest")


class _StridedTransposedConv(nn.ConvTranspose1d):
    """ConvTranspose1d with kernel = stride: no overlap, so it is one matmul (torch's CPU kernel for
    this is a slow generic path). Same parameters and state dict as ``nn.ConvTranspose1d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, n] -> [B, O, n * s]
        batch, channels, n = x.shape
        out, scale = self.out_channels, self.stride[0]
        y = torch.matmul(x.transpose(1, 2), self.weight.reshape(channels, out * scale))  # [B, n, O*s]
        y = y.view(batch, n, out, scale).permute(0, 2, 1, 3).reshape(batch, out, n * scale)
        return y + self.bias.unsqueeze(-1)


def _repeat_conv(channels: int, scale: int) -> nn.ConvTranspose1d:
    conv = _StridedTransposedConv(channels, channels, kernel_size=scale, stride=scale)
    with torch.no_grad():
        conv.weight.zero_()
        idx = torch.arange(channels)
        conv.weight[idx, idx, :] = 1.0  # start as nearest-neighbour repetition
        conv.bias.zero_()
    return conv


def _smoothing_conv(channels: int, scale: int) -> nn.Conv1d:
    conv = nn.Conv1d(channels, channels, kernel_size=2 * scale + 1, padding=scale, groups=channels)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (2 * scale + 1))
        conv.bias.zero_()
    return conv


class _NearestStage(nn.Module):
    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.smooth = _smoothing_conv(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.smooth(torch.repeat_interleave(x, self.scale, dim=-1))


class MelUpsampler(nn.Module):
    """Mel frames ``[B, n_mels, F]`` -> conditioning ``[B, channels, F * hop]`` (float32).

    n_mels: mel bands in. channels: conditioning channels out. scales: upsample factors whose product
    is the hop length. mode: "transposed" or "nearest". context: frames either side seen by the
    context convolution (0 = a 1x1 convolution).
    """

    def __init__(self, n_mels: int, channels: int, scales: tuple[int, ...], mode: str, context: int) -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.scales = tuple(int(s) for s in scales)
        self.hop = 1
        for s in self.scales:
            self.hop *= s
        self.mode = mode
        self.context = int(context)
        self.context_conv = nn.Conv1d(n_mels, channels, kernel_size=2 * context + 1, padding=context)
        stages: list[nn.Module] = []
        for s in self.scales:
            stages.append(_repeat_conv(channels, s) if mode == "transposed" else _NearestStage(channels, s))
        self.stages = nn.ModuleList(stages)

    @property
    def radius_frames(self) -> int:
        """Frames either side of frame ``n // hop`` that can influence the conditioning of sample ``n``."""
        if self.mode == "transposed":
            return self.context
        # stage i smooths over +-s_i of its output steps = one of its input steps = hop / prod(s_<i) samples
        reach, step = 0, self.hop
        for s in self.scales:
            reach += step
            step //= s
        return self.context + (reach + self.hop - 1) // self.hop

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.context_conv(mel)
        for stage in self.stages:
            x = stage(x)
        return x

    def span(self, mel: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``forward(mel)[..., start:stop]``, computed from only the frames it needs: ``[B, C, stop-start]``."""
        frames = mel.shape[-1]
        if not 0 <= start < stop <= frames * self.hop:
            raise ValueError(f"sample span [{start}, {stop}) is outside the mel's {frames * self.hop} samples")
        margin = self.radius_frames + 1
        lo = max(0, start // self.hop - margin)
        hi = min(frames, -(-stop // self.hop) + margin)
        out = self.forward(mel[..., lo:hi])
        offset = lo * self.hop
        return out[..., start - offset : stop - offset]
