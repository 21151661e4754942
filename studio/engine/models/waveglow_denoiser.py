"""WaveGlow's bias denoiser: subtract the model's own "hiss" spectrum from what it generates.

A trained WaveGlow, run on a mel of silence with σ = 0, still produces a faint constant noise (its
bias). Its average STFT magnitude per frequency bin is measured once; ``denoise(audio, strength)``
subtracts ``strength × bias`` from the magnitude of the audio, clamps at zero, and resynthesises with
the audio's own phase (``torch.stft`` / ``torch.istft``, Hann window, the profile's n_fft / hop / win).
Strength 0 returns the audio through an STFT round trip (identical within float error); the
reference implementation's default strength is 0.1.

Threads: build and call it on the thread that runs the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from studio.engine.audio.features import silence_value

if TYPE_CHECKING:
    from studio.engine.models.waveglow import WaveGlow

DEFAULT_BIAS_FRAMES = 88
"""Mel frames of the silent input the bias is measured on (about 1 s at 22.05 kHz, hop 256)."""


class WaveGlowDenoiser:
    """Bias-spectrum subtraction for one model (see module doc).

    model: the WaveGlow whose bias is measured (its weights at construction time).
    bias_mel: "zeros" (a mel of zeros, as the reference implementation does) or "silence" (the
        profile's value for digital silence, ``features.silence_value``).
    bias_frames: length of the silent mel, in frames.
    """

    def __init__(self, model: WaveGlow, bias_mel: str = "zeros", bias_frames: int = DEFAULT_BIAS_FRAMES) -> None:
        if bias_mel not in ("zeros", "silence"):
            raise ValueError(f"bias_mel must be 'zeros' or 'silence', got {bias_mel!r}")
        if bias_frames <= 0:
            raise ValueError(f"bias_frames must be positive, got {bias_frames}")
        profile = model.profile
        self.n_fft = profile.n_fft
        self.hop_length = profile.hop_length
        self.win_length = min(profile.win_length, profile.n_fft)
        device = next(model.parameters()).device
        self.window = torch.hann_window(self.win_length, device=device)
        fill = 0.0 if bias_mel == "zeros" else silence_value(profile)
        mel = torch.full((1, model.config.n_mels, bias_frames), fill, device=device)
        g = model.config.n_group
        z = torch.zeros(1, g, bias_frames * self.hop_length // g, device=device)  # σ = 0, no RNG touched
        with torch.inference_mode():
            self.bias_audio = model.infer(mel, sigma=0.0, z=z).float()[0]
            self.bias_spectrum = self.magnitude(self.bias_audio).mean(dim=-1)  # [n_fft // 2 + 1]

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            audio,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(audio.device),
            center=True,
            return_complex=True,
        )

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """|STFT| of audio [T] or [B, T] → [(B,) n_fft // 2 + 1, frames]."""
        return self._stft(audio.float()).abs()

    def __call__(self, audio: torch.Tensor, strength: float) -> torch.Tensor:
        """Denoised audio, same shape as ``audio`` ([T] or [B, T], float32). ``strength`` ≥ 0."""
        if not strength >= 0.0:
            raise ValueError(f"denoiser strength must be ≥ 0, got {strength}")
        length = audio.shape[-1]
        if length <= self.n_fft // 2:  # too short for the STFT's reflect padding: pad with silence
            audio = torch.nn.functional.pad(audio, (0, self.n_fft // 2 + 1 - length))
        spec = self._stft(audio.float())
        magnitude = spec.abs()
        bias = self.bias_spectrum.to(magnitude.device).unsqueeze(-1)
        cleaned = (magnitude - strength * bias).clamp_(min=0.0)
        phase = torch.polar(torch.ones_like(magnitude), spec.angle())
        return torch.istft(
            cleaned * phase,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(audio.device),
            center=True,
            length=audio.shape[-1],
        )[..., :length]
