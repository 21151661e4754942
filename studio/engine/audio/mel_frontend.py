"""The mel front end of a :class:`FeatureProfile` in torch: audio → mel features (CPU or CUDA, batched).

Split from :mod:`studio.engine.audio.features` so that profiles, cards and the model catalogue can be
read without importing torch; ``features.MelFrontEnd`` / ``features.compute_mel`` still resolve here.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from studio.engine.audio.features import (
    FeatureProfile,
    analysis_window,
    compress,
    frame_padding,
    get_profile,
    mel_filterbank,
    validate_profile,
)


class MelFrontEnd(nn.Module):
    """Audio → mel features of one :class:`FeatureProfile`, as an ``nn.Module`` (CPU or CUDA, batched).

    ``forward(audio)``: float audio ``[B, T]`` → ``[B, n_mels, T // hop_length]`` float32, or ``[T]`` →
    ``[n_mels, T // hop_length]``. The signal is padded by :func:`frame_padding` (reflect; zeros when
    the signal is shorter than the padding), cut into frames of n_fft every hop samples, weighted by
    the periodic Hann window (win_length, centred in n_fft), transformed (unnormalised rfft), reduced to
    ``sqrt(re² + im² + 1e-9)`` (power 1; the epsilon keeps gradients finite, as HiFi-GAN) or
    ``re² + im²`` (power 2), projected on the mel filterbank and compressed (:func:`compress`).
    Deterministic; no state changes in ``forward``, so one instance may serve several threads.
    Buffers (not saved in state dicts): ``window`` [n_fft], ``mel_basis`` [n_mels, n_fft // 2 + 1].
    """

    def __init__(self, profile: FeatureProfile | str) -> None:
        super().__init__()
        profile = get_profile(profile)
        validate_profile(profile)
        self.profile = profile
        self.register_buffer("window", torch.from_numpy(analysis_window(profile)).float(), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(profile)).float(), persistent=False)

    @property
    def n_mels(self) -> int:
        return self.profile.n_mels

    @property
    def hop_length(self) -> int:
        return self.profile.hop_length

    def _frames(self, audio: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if audio.dim() not in (1, 2):
            raise ValueError(f"audio must be [T] or [B, T], got shape {tuple(audio.shape)}")
        unbatched = audio.dim() == 1
        x = audio.unsqueeze(0) if unbatched else audio
        return x.to(device=self.window.device, dtype=torch.float32), unbatched

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """Complex STFT with this profile's framing: [B, T] → [B, n_fft // 2 + 1, T // hop] complex64."""
        p = self.profile
        x, _ = self._frames(audio)
        batch, t = x.shape
        frames = t // p.hop_length
        n_freq = p.n_fft // 2 + 1
        if frames == 0:
            return torch.zeros(batch, n_freq, 0, dtype=torch.complex64, device=x.device)
        left, right = frame_padding(p)
        if right < 0:
            x, right = x[:, : t + right], 0
        mode = "reflect" if max(left, right) < x.shape[1] else "constant"
        x = torch.nn.functional.pad(x.unsqueeze(1), (left, right), mode=mode).squeeze(1)
        spec = torch.stft(
            x,
            p.n_fft,
            hop_length=p.hop_length,
            win_length=p.n_fft,
            window=self.window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spec[..., :frames]

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """|STFT|^power: [B, T] → [B, n_fft // 2 + 1, T // hop] (or unbatched for [T])."""
        _, unbatched = self._frames(audio)
        spec = self.stft(audio)
        energy = spec.real.square() + spec.imag.square()
        out = torch.sqrt(energy + 1e-9) if self.profile.power == 1.0 else energy
        return out.squeeze(0) if unbatched else out

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(audio)
        mel = torch.matmul(self.mel_basis, spec)
        return compress(mel, self.profile)


@functools.lru_cache(maxsize=8)
def _front_end(profile: FeatureProfile) -> MelFrontEnd:
    return MelFrontEnd(profile).eval()


def compute_mel(audio: np.ndarray, profile: FeatureProfile | str) -> np.ndarray:
    """numpy convenience on the CPU: float audio [T] → float32 [n_mels, T // hop] ([B, T] → [B, n_mels, …])."""
    profile = get_profile(profile)
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with torch.no_grad():
        return _front_end(profile)(x).numpy()
