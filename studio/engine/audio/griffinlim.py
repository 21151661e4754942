"""Griffin-Lim reconstruction from mel features: the quality baseline every vocoder is compared with.

Pipeline: undo the profile's log/normalisation (``features.decompress``) → estimate the linear
spectrogram under the mel filterbank (non-negative least squares: the clamped pseudo-inverse, refined by
multiplicative NNLS updates) → 32 iterations of fast Griffin-Lim (Perraudin et al. 2013, momentum
0.99) with this profile's exact framing, so a mel of ``N`` frames gives ``N · hop_length`` samples.

Runs in torch on the CPU by default (``device="cuda"`` works too); pure computation, no shared state,
safe from any worker thread. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from studio.engine.audio.features import (
    FeatureProfile,
    MelFrontEnd,
    decompress,
    frame_padding,
    get_profile,
    mel_filterbank,
)

DEFAULT_ITERATIONS = 32
DEFAULT_MOMENTUM = 0.99
NNLS_ITERATIONS = 40


@functools.lru_cache(maxsize=8)
def _pinv(profile: FeatureProfile) -> tuple[np.ndarray, np.ndarray]:
    basis = mel_filterbank(profile)
    return basis, np.linalg.pinv(basis)


def linear_from_mel_energies(energies: np.ndarray, profile: FeatureProfile) -> np.ndarray:
    """Linear mel energies ([n_mels, N] or [B, n_mels, N]) → a non-negative estimate of |STFT|^power
    ([…, n_fft // 2 + 1, N]) whose mel projection matches them in the least-squares sense.

    Starts from the pseudo-inverse clamped at a small floor, then runs multiplicative NNLS updates
    (Lee & Seung): S ← S · Mᵀm / Mᵀ(M S). Bins outside fmin–fmax (no filter covers them) stay 0.
    """
    basis, pinv = _pinv(profile)
    m = np.maximum(np.asarray(energies, dtype=np.float64), 0.0)
    s = np.matmul(pinv, m)
    covered = basis.sum(axis=0) > 0
    floor = 1e-6 * max(float(np.max(np.abs(s))), 1e-12)
    s = np.where(covered[:, None], np.maximum(s, floor), 0.0)
    target = np.matmul(basis.T, m)
    for _ in range(NNLS_ITERATIONS):
        s *= target / np.maximum(np.matmul(basis.T, np.matmul(basis, s)), 1e-30)
    return s


def mel_to_linear(mel: np.ndarray, profile: FeatureProfile | str) -> np.ndarray:
    """Mel features of ``profile`` ([n_mels, N] or [B, n_mels, N]) → estimated STFT magnitude
    ([…, n_fft // 2 + 1, N], float32, ≥ 0)."""
    profile = get_profile(profile)
    energies = decompress(np.asarray(mel, dtype=np.float64), profile)
    linear = linear_from_mel_energies(energies, profile)
    return (linear ** (1.0 / profile.power)).astype(np.float32)


class _Stft:
    """Analysis and synthesis with a profile's framing (the same frames as ``MelFrontEnd``)."""

    def __init__(self, profile: FeatureProfile, device: torch.device) -> None:
        self.p = profile
        self.front = MelFrontEnd(profile).to(device)
        self.window = self.front.window
        self.left, _ = frame_padding(profile)

    def analyse(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front.stft(audio)

    def synthesise(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Least-squares inverse (weighted overlap-add): spec [B, F, N] → audio [B, length]."""
        p = self.p
        batch, _, frames = spec.shape
        chunks = torch.fft.irfft(spec, n=p.n_fft, dim=1) * self.window[None, :, None]  # [B, n_fft, N]
        total = (frames - 1) * p.hop_length + p.n_fft
        fold = functools.partial(
            torch.nn.functional.fold, output_size=(1, total), kernel_size=(1, p.n_fft), stride=(1, p.hop_length)
        )
        signal = fold(chunks).reshape(batch, total)
        wsq = self.window.square()[None, :, None].expand(1, p.n_fft, frames)
        envelope = fold(wsq).reshape(total)
        signal = signal / torch.where(envelope > 1e-8, envelope, torch.ones_like(envelope))
        out = signal[:, self.left : self.left + length]
        if out.shape[1] < length:
            out = torch.nn.functional.pad(out, (0, length - out.shape[1]))
        return out


def griffin_lim(
    mel: np.ndarray,
    profile: FeatureProfile | str,
    n_iter: int = DEFAULT_ITERATIONS,
    momentum: float = DEFAULT_MOMENTUM,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Reconstruct audio from mel features of ``profile``.

    mel: [n_mels, N] (→ float32 audio [N · hop_length]) or [B, n_mels, N] (→ [B, N · hop_length]).
    n_iter: Griffin-Lim iterations (32 is the project's baseline; 0 gives random phase).
    momentum: fast Griffin-Lim's acceleration in [0, 1) (0 = the classic algorithm).
    The result is peak-limited to [-1, 1].
    """
    profile = get_profile(profile)
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    mel = np.asarray(mel)
    unbatched = mel.ndim == 2
    magnitude = mel_to_linear(mel[None] if unbatched else mel, profile)
    frames = magnitude.shape[-1]
    length = frames * profile.hop_length
    if frames == 0:
        return np.zeros((length,) if unbatched else (magnitude.shape[0], length), np.float32)
    dev = torch.device(device)
    stft = _Stft(profile, dev)
    mag = torch.from_numpy(magnitude).to(dev)
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(mag.shape, generator=gen, dtype=torch.float32).to(dev) * (2 * np.pi)
    angles = torch.polar(torch.ones_like(mag), phase)
    previous = torch.zeros_like(angles)
    with torch.no_grad():
        for _ in range(n_iter):
            rebuilt = stft.analyse(stft.synthesise(mag * angles, length))
            angles = rebuilt - (momentum / (1.0 + momentum)) * previous
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        audio = stft.synthesise(mag * angles, length).clamp(-1.0, 1.0).cpu().numpy()
    return audio[0] if unbatched else audio
