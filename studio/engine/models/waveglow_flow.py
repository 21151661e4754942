"""The building blocks of a WaveGlow flow: squeeze, invertible 1×1 convolution, WN coupling network.

Structure after Prenger, Valle & Catanzaro, "WaveGlow" (ICASSP 2019) and NVIDIA's public reference;
module and parameter names follow that reference (``WN``, ``start``, ``in_layers``, ``res_skip_layers``,
``cond_layer``, ``end``, ``convinv.N.conv``) so that its checkpoints map onto these modules by name.

Shapes: ``B`` batch, ``T`` samples, ``G`` the group size (``n_group``), ``T/G`` grouped time steps.
Weight norm uses ``torch.nn.utils.parametrizations.weight_norm`` throughout; ``fold_weight_norm`` removes
it, baking ``g · v / ‖v‖`` into a plain weight for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

# -- squeezing audio and conditioning into groups ---------------------------------------------------


def squeeze_audio(audio: torch.Tensor, n_group: int) -> torch.Tensor:
    """[B, T] → [B, G, T/G]: channel j of step i holds sample ``i·G + j``. T must be a multiple of G."""
    b, t = audio.shape
    if t % n_group:
        raise ValueError(f"audio length {t} is not a multiple of n_group={n_group}")
    return audio.reshape(b, t // n_group, n_group).transpose(1, 2)


def unsqueeze_audio(grouped: torch.Tensor) -> torch.Tensor:
    """[B, G, T/G] → [B, T], the inverse of ``squeeze_audio``."""
    b = grouped.shape[0]
    return grouped.transpose(1, 2).reshape(b, -1)


def squeeze_condition(cond: torch.Tensor, n_group: int) -> torch.Tensor:
    """[B, C, T] → [B, C·G, T/G]: channel ``c·G + j`` of step i holds ``cond[c, i·G + j]``."""
    b, c, t = cond.shape
    if t % n_group:
        raise ValueError(f"conditioning length {t} is not a multiple of n_group={n_group}")
    return cond.reshape(b, c, t // n_group, n_group).transpose(2, 3).reshape(b, c * n_group, t // n_group)


# -- weight norm -------------------------------------------------------------------------------------


def weight_normed(conv: nn.Conv1d) -> nn.Conv1d:
    """``conv`` with weight norm over every dimension but the output channels (dim 0)."""
    return parametrizations.weight_norm(conv, name="weight", dim=0)


def fold_weight_norm(module: nn.Module) -> int:
    """Replace every weight-norm parametrization under ``module`` by its current weight; returns how many."""
    folded = 0
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
            folded += 1
    return folded


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)


def convert_weight_norm_keys(state_dict: dict, prefix: str, want_weight_norm: bool) -> None:
    """Rewrite, in place, the weight keys of one conv at ``prefix`` to the layout the module has.

    Layouts: parametrized (``parametrizations.weight.original0/1`` = g, v), legacy
    ``torch.nn.utils.weight_norm`` (``weight_g``, ``weight_v``, as in NVIDIA's checkpoints) and folded
    (``weight``). Keys already in the wanted layout, or absent, are left alone.
    """
    g_key, v_key = prefix + "parametrizations.weight.original0", prefix + "parametrizations.weight.original1"
    legacy_g, legacy_v, plain = prefix + "weight_g", prefix + "weight_v", prefix + "weight"
    if legacy_g in state_dict and legacy_v in state_dict:
        state_dict[g_key] = state_dict.pop(legacy_g)
        state_dict[v_key] = state_dict.pop(legacy_v)
    if want_weight_norm and plain in state_dict and g_key not in state_dict:
        w = state_dict.pop(plain)
        state_dict[g_key] = _norm_except_dim0(w)
        state_dict[v_key] = w
    elif not want_weight_norm and g_key in state_dict and v_key in state_dict and plain not in state_dict:
        g, v = state_dict.pop(g_key), state_dict.pop(v_key)
        state_dict[plain] = v * (g / _norm_except_dim0(v))


# -- invertible 1×1 convolution ----------------------------------------------------------------------


class Invertible1x1Conv(nn.Module):
    """A learned channel mixing ``z = W x`` applied at every grouped time step.

    ``W`` [C, C] starts as a random orthogonal matrix with determinant +1 (drawn from torch's global
    generator). ``forward`` returns ``(W x, B · T/G · log|det W|)``; ``inverse`` applies ``W⁻¹``,
    computed once in float64 and cached until ``W`` changes (an optimizer step, a load, a move).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        if torch.det(q) < 0:
            q[:, 0] = -q[:, 0]
        self.conv = nn.Conv1d(channels, channels, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(q.unsqueeze(-1))
        self._inverse_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def matrix(self) -> torch.Tensor:
        """W as a [C, C] tensor (a view of the conv weight)."""
        return self.conv.weight.squeeze(-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T/G] → (W x [B, C, T/G], log|det| of the whole map, a scalar)."""
        batch, _, steps = x.shape
        w = self.matrix
        # in float64 (a C×C matrix, cheap), returned in at least float32 so half precision stays exact
        log_det = torch.linalg.slogdet(w.double())[1].to(torch.promote_types(w.dtype, torch.float32))
        log_det = batch * steps * log_det
        return self.conv(x), log_det

    def inverse_weight(self) -> torch.Tensor:
        """W⁻¹ as a conv weight [C, C, 1] in W's dtype, cached while W is unchanged."""
        w = self.conv.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)
        if self._inverse_cache is None or self._inverse_cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                inv = torch.linalg.inv(w.detach().squeeze(-1).double()).to(w.dtype).unsqueeze(-1)
            self._inverse_cache = (key, inv)
        return self._inverse_cache[1]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C, T/G] → W⁻¹ z."""
        w_inv = self.inverse_weight()
        return F.conv1d(z, w_inv.to(z.dtype))


# -- the coupling network ----------------------------------------------------------------------------


class WN(nn.Module):
    """A non-causal WaveNet-like network computing the affine coupling transform.

    Input ``x0`` [B, n_in, T/G] (the half of the channels left unchanged) and conditioning
    ``cond`` [B, n_cond, T/G]; output [B, 2·n_in, T/G]: the first ``n_in`` channels are the shift
    ``b``, the last ``n_in`` the log-scale ``log s``. Layers: 1×1 ``start``; ``n_layers`` gated
    (tanh · sigmoid) dilated convolutions with dilation 2^i, each conditioned through one shared 1×1
    ``cond_layer``; residual and skip 1×1 convs; a 1×1 ``end`` initialised to zero so that every
    coupling starts as the identity. All but ``end`` carry weight norm.
    """

    def __init__(self, n_in: int, n_cond: int, n_layers: int, n_channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd (non-causal, centred), got {kernel_size}")
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.start = weight_normed(nn.Conv1d(n_in, n_channels, 1))
        self.cond_layer = weight_normed(nn.Conv1d(n_cond, 2 * n_channels * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = 2**i
            padding = (kernel_size - 1) * dilation // 2
            self.in_layers.append(
                weight_normed(nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation, padding=padding))
            )
            res_skip = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(weight_normed(nn.Conv1d(n_channels, res_skip, 1)))
        self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    @staticmethod
    def half_span(n_layers: int, kernel_size: int) -> int:
        """Grouped steps on each side of a step that its output depends on: (k−1)/2 · (2^L − 1)."""
        return (kernel_size - 1) // 2 * (2**n_layers - 1)

    def forward(self, x0: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.start(x0)
        cond = self.cond_layer(cond)
        c = self.n_channels
        skip = None
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            acts = in_layer(h) + cond[:, 2 * c * i : 2 * c * (i + 1)]
            gated = torch.tanh(acts[:, :c]) * torch.sigmoid(acts[:, c:])
            res_skip = res_skip_layer(gated)
            if i < self.n_layers - 1:
                h = h + res_skip[:, :c]
                out = res_skip[:, c:]
            else:
                out = res_skip
            skip = out if skip is None else skip + out
        return self.end(skip)
