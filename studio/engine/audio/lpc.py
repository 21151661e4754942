"""Linear prediction from mel features (the spectral envelope LPCNet-style vocoders hand to the network).

Per mel frame (everything in float64 until the coefficients are returned):

1. undo the profile's log (``features.decompress``) -> mel energies ``m`` (of the STFT magnitude or power);
2. estimate the linear spectrum under the mel filters ``M`` by non-negative least squares, as the
   project's Griffin-Lim does: the pseudo-inverse clamped at a small floor, then ``NNLS_ITERATIONS``
   multiplicative updates ``S <- S * M^T m / M^T (M S)``; squared when the profile is a magnitude
   mel (``power == 1``), so ``S`` is a power spectrum;
3. multiply by the pre-emphasis filter's power response ``|1 - alpha e^{-jw}|^2`` (the network models the
   pre-emphasised signal, LPCNet's 0.85), add a white-noise floor (``NOISE_FLOOR`` of the mean power);
4. autocorrelation = inverse real FFT of that power spectrum, lags 0..order; Gaussian lag window
   (``LAG_WINDOW_HZ``: bandwidth expansion) and white-noise correction ``r0 *= 1 + WHITE_NOISE``;
5. Levinson-Durbin -> ``A(z) = 1 + a_1 z^-1 + ... + a_p z^-p``; reflection coefficients are clamped to
   ``|k| <= MAX_REFLECTION``, so the synthesis filter ``1 / A(z)`` is always stable.

The returned *predictor* coefficients are ``c_k = -a_k``: the prediction of sample ``t`` is
``p_t = sum_k c_k s_{t-k}`` (``predict``). Coefficients do not depend on the mel's overall level (the
autocorrelation's scale cancels), so silence frames give a (near) white-noise predictor.

Pure torch (CPU or CUDA), no shared state: safe from any thread.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from studio.engine.audio.features import FeatureProfile, decompress, mel_filterbank

DEFAULT_ORDER = 16
MAX_ORDER = 32
"""The highest order the vocoders' ``lpc_order`` accepts."""
PREEMPHASIS = 0.85
"""LPCNet's pre-emphasis: the network sees ``s_t = x_t - 0.85 x_{t-1}``; the output is de-emphasised."""
NNLS_ITERATIONS = 12
LAG_WINDOW_HZ = 40.0
"""Gaussian lag window ``w_k = exp(-(2 pi f k / fs)^2 / 2)``: widens every formant by about this much."""
WHITE_NOISE = 1e-4
"""White-noise correction of ``r0`` (-40 dB): keeps the normal equations well conditioned."""
NOISE_FLOOR = 1e-5
"""A white floor added to the power spectrum, relative to its mean (-50 dB)."""
MAX_REFLECTION = 0.9999


@functools.lru_cache(maxsize=8)
def _basis(profile: FeatureProfile) -> tuple[np.ndarray, np.ndarray]:
    basis = mel_filterbank(profile)
    return basis, np.linalg.pinv(basis)


def _basis_tensors(profile: FeatureProfile, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    basis, pinv = _basis(profile)
    m = torch.from_numpy(basis).to(device)
    covered = torch.from_numpy(basis.sum(axis=0) > 0).to(device)
    return m, torch.from_numpy(pinv).to(device), covered


def mel_to_power(mel: Tensor, profile: FeatureProfile, iterations: int = NNLS_ITERATIONS) -> Tensor:
    """Mel features [..., n_mels, N] of ``profile`` -> estimated power spectrum [..., N, n_fft // 2 + 1]
    (float64, >= 0; bins no mel filter covers are 0). See the module doc, steps 1-2."""
    basis, pinv, covered = _basis_tensors(profile, mel.device)
    m = decompress(mel.detach().to(torch.float64), profile).clamp_min(0.0)
    m = m.transpose(-1, -2)  # [..., N, n_mels]
    s = m @ pinv.T  # [..., N, F]
    floor = 1e-6 * s.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    s = torch.where(covered, torch.maximum(s, floor), torch.zeros_like(s))
    target = m @ basis
    for _ in range(iterations):
        s = s * target / ((s @ basis.T) @ basis).clamp_min(1e-30)
    return s if profile.power == 2.0 else s * s


def preemphasis_response(bins: int, alpha: float, device: torch.device | None = None) -> Tensor:
    """``|1 - alpha e^{-jw}|^2`` at ``bins`` frequencies from 0 to Nyquist, float64 [bins]."""
    w = torch.linspace(0.0, math.pi, bins, dtype=torch.float64, device=device)
    return 1.0 + alpha * alpha - 2.0 * alpha * torch.cos(w)


def autocorrelation_from_power(power: Tensor, order: int, sample_rate: float) -> Tensor:
    """Power spectrum [..., F] (F = n_fft // 2 + 1) -> windowed autocorrelation [..., order + 1]
    (float64): noise floor, inverse real FFT, lag window, white-noise correction (module doc, 3-4)."""
    power = power.to(torch.float64)
    n_fft = 2 * (power.shape[-1] - 1)
    if order >= n_fft:
        raise ValueError(f"LPC order {order} needs more than {n_fft} autocorrelation lags (n_fft too small)")
    power = power + NOISE_FLOOR * power.mean(dim=-1, keepdim=True).clamp_min(1e-30)
    r = torch.fft.irfft(power, n=n_fft, dim=-1)[..., : order + 1]
    k = torch.arange(order + 1, dtype=torch.float64, device=power.device)
    lag = torch.exp(-0.5 * (2.0 * math.pi * LAG_WINDOW_HZ * k / sample_rate) ** 2)
    r = r * lag
    return torch.cat([r[..., :1] * (1.0 + WHITE_NOISE), r[..., 1:]], dim=-1)


def levinson(r: Tensor) -> tuple[Tensor, Tensor]:
    """Levinson-Durbin on autocorrelations r [..., p + 1] (float64) -> (a [..., p + 1] with a_0 = 1,
    i.e. ``A(z)``; prediction error power [...]). Reflection coefficients are clamped to
    ``|k| <= MAX_REFLECTION`` (a stable ``1 / A(z)`` even for a not quite positive-definite r)."""
    r = r.to(torch.float64)
    p = r.shape[-1] - 1
    a = torch.zeros_like(r)
    a[..., 0] = 1.0
    err = r[..., 0].clamp_min(1e-300)
    for i in range(1, p + 1):
        acc = (a[..., :i] * r[..., 1 : i + 1].flip(-1)).sum(-1)
        k = (-acc / err).clamp(-MAX_REFLECTION, MAX_REFLECTION)
        prev = a[..., : i + 1].clone()
        a[..., 1 : i + 1] = prev[..., 1 : i + 1] + k.unsqueeze(-1) * prev[..., :i].flip(-1)
        err = (err * (1.0 - k * k)).clamp_min(1e-300)
    return a, err


def lpc_from_mel(
    mel: Tensor, profile: FeatureProfile, order: int = DEFAULT_ORDER, preemphasis: float = PREEMPHASIS
) -> Tensor:
    """Predictor coefficients per frame: mel [..., n_mels, N] -> c [..., N, order] (float64), with
    ``p_t = sum_{k=1..order} c[k-1] s_{t-k}`` predicting the pre-emphasised signal ``s``."""
    return predictor_and_error(mel, profile, order, preemphasis)[0]


def predictor_and_error(
    mel: Tensor, profile: FeatureProfile, order: int = DEFAULT_ORDER, preemphasis: float = PREEMPHASIS
) -> tuple[Tensor, Tensor]:
    """``lpc_from_mel``'s coefficients [..., N, order] and each frame's prediction-error power [..., N]
    (float64; in the units of the power spectrum's inverse FFT at lag 0, i.e. of a windowed frame)."""
    if order < 1:
        raise ValueError(f"LPC order must be >= 1, got {order}")
    power = mel_to_power(mel, profile)
    power = power * preemphasis_response(power.shape[-1], preemphasis, power.device)
    a, err = levinson(autocorrelation_from_power(power, order, profile.sample_rate))
    return -a[..., 1:], err


def predict(signal: Tensor, coefficients: Tensor) -> Tensor:
    """Teacher-forced prediction: signal [B, T] (samples before the segment count as 0) and per-sample
    predictor coefficients [B, T, order] -> p [B, T] with ``p_t = sum_k c_t[k-1] s_{t-k}``."""
    order = coefficients.shape[-1]
    padded = torch.nn.functional.pad(signal, (order, 0))
    # windows[:, t, j] = s_{t - order + j}; reverse so column k-1 holds s_{t-k}
    windows = padded.unfold(-1, order, 1)[:, : signal.shape[-1]].flip(-1)
    return (windows * coefficients).sum(-1)


def preemphasise(audio: Tensor, alpha: float = PREEMPHASIS) -> Tensor:
    """``s_t = x_t - alpha x_{t-1}`` along the last axis (x_{-1} = 0)."""
    prev = torch.nn.functional.pad(audio[..., :-1], (1, 0))
    return audio - alpha * prev


def deemphasise(signal: np.ndarray, alpha: float = PREEMPHASIS, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``preemphasise`` on a block: signal [..., n] (numpy), state = the last output sample
    of the previous block [...] (None: 0) -> (x [..., n] float32, new state [...]). Blocks joined
    give the same result as one call on the whole signal."""
    from scipy.signal import lfilter

    s = np.asarray(signal, dtype=np.float64)
    zi = np.zeros(s.shape[:-1] + (1,)) if state is None else alpha * np.asarray(state, dtype=np.float64)[..., None]
    out, _ = lfilter([1.0], [1.0, -alpha], s, axis=-1, zi=zi)
    last = out[..., -1] if out.shape[-1] else (np.zeros(s.shape[:-1]) if state is None else np.asarray(state))
    return out.astype(np.float32), np.asarray(last, dtype=np.float64)


def per_sample(frame_coefficients: Tensor, hop: int, samples: int) -> Tensor:
    """Frame coefficients [B, frames, order] -> per-sample [B, samples, order] (frame ``t // hop`` holds
    sample ``t``; the last frame's are repeated where the frames end first)."""
    out = frame_coefficients.repeat_interleave(hop, dim=1)[:, :samples]
    if out.shape[1] < samples:
        out = torch.cat([out, out[:, -1:].expand(-1, samples - out.shape[1], -1)], dim=1)
    return out


def excitation(audio: Tensor, coefficients: Tensor, alpha: float = PREEMPHASIS) -> Tensor:
    """What the prediction misses: audio [B, T] and per-sample coefficients [B, T, order] ->
    ``e = s - p`` [B, T] with ``s`` the pre-emphasised audio (clamped to [-1, 1]) and ``p`` its
    prediction from the real past. :class:`Synthesis` inverts it."""
    s = preemphasise(audio.float()).clamp(-1.0, 1.0)
    return s - predict(s, coefficients.to(s.dtype))


class MelCoefficients:
    """Predictor coefficients of a mel's frames, computed ``chunk`` frames at a time when first asked
    for (each frame's depend on that frame alone), so a long utterance's first block does not wait
    for all of them (8 ms per second of audio). mel: [n_mels, frames] tensor; ``row(frame)`` -> [order]
    float64 numpy."""

    def __init__(self, mel: Tensor, profile: FeatureProfile, order: int = DEFAULT_ORDER, chunk: int = 64) -> None:
        if mel.dim() != 2 or mel.shape[-1] < 1:
            raise ValueError(f"need a mel [n_mels, frames >= 1], got shape {tuple(mel.shape)}")
        self.mel, self.profile, self.order, self.chunk = mel.detach().cpu().double(), profile, int(order), int(chunk)
        self.frames = int(mel.shape[-1])
        self._chunks: dict[int, np.ndarray] = {}

    def row(self, frame: int) -> np.ndarray:
        index = frame // self.chunk
        block = self._chunks.get(index)
        if block is None:
            lo = index * self.chunk
            block = self._chunks[index] = lpc_from_mel(self.mel[:, lo : lo + self.chunk], self.profile, self.order).numpy()
        return block[frame - index * self.chunk]


class _ArrayCoefficients:
    def __init__(self, coefficients: np.ndarray) -> None:
        self.coefficients = coefficients
        self.frames, self.order = coefficients.shape

    def row(self, frame: int) -> np.ndarray:
        return self.coefficients[frame]


class Synthesis:
    """Streaming inverse of :func:`excitation`: excitation blocks -> audio, per frame the all-pole
    filter ``s_t = e_t + sum_k c[k-1] s_{t-k}`` with that frame's coefficients, then de-emphasis.

    frame_coefficients: [frames, order] (float64 numpy, from :func:`lpc_from_mel`) or a
    :class:`MelCoefficients` (computed as the blocks reach them); frame ``t // hop``
    holds sample ``t``, samples past the last frame use the last frame's. ``process`` takes 1-D blocks
    of any length in order (numpy, float) and returns float32 blocks of the same length; blocks joined
    give the same result as one call on the whole excitation. Runs on the calling thread; the filter
    state crosses frame borders through the last ``order`` outputs, which is exact for an all-pole filter
    (``s`` is clipped to [-1, 1] per frame, as training clamps it).
    """

    def __init__(self, frame_coefficients: np.ndarray | MelCoefficients, hop: int, alpha: float = PREEMPHASIS) -> None:
        if not isinstance(frame_coefficients, MelCoefficients):
            array = np.asarray(frame_coefficients, dtype=np.float64)
            if array.ndim != 2 or array.shape[0] < 1:
                raise ValueError(f"need coefficients [frames >= 1, order], got shape {array.shape}")
            frame_coefficients = _ArrayCoefficients(array)
        if hop < 1:
            raise ValueError(f"hop must be >= 1, got {hop}")
        self.coefficients, self.hop, self.alpha = frame_coefficients, int(hop), float(alpha)
        self.position = 0
        order = frame_coefficients.order
        self.history = np.zeros(order)  # s_{t-1}, s_{t-2}, ... (most recent first)
        # lfilter's (transposed direct form II) state of 1/A(z) from the past outputs h:
        # zi[k] = sum_m c[k + m] h[m] (zero past the order); _state_index[k, m] = k + m
        self._state_index = np.add.outer(np.arange(order), np.arange(order))
        self.emphasis_state: np.ndarray | None = None

    def process(self, block: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        e = np.asarray(block, dtype=np.float64).reshape(-1)
        s = np.empty_like(e)
        done, order, last = 0, self.coefficients.order, self.coefficients.frames - 1
        while done < e.shape[0]:
            t = self.position + done
            frame = min(t // self.hop, last)
            n = min(e.shape[0] - done, (frame + 1) * self.hop - t) if frame < last else e.shape[0] - done
            c = self.coefficients.row(frame)
            a = np.concatenate([[1.0], -c])
            zi = np.concatenate([c, np.zeros(order)])[self._state_index] @ self.history  # = lfiltic([1], a, history)
            # clipped per frame to the range training clamps ``s`` to: a drawn excitation that drives a
            # sharp resonance too hard cannot ring on into the next frames at full scale
            s[done : done + n] = np.clip(lfilter([1.0], a, e[done : done + n], zi=zi)[0], -1.0, 1.0)
            recent = s[max(0, done + n - order) : done + n][::-1]
            self.history = np.concatenate([recent, self.history])[:order]
            done += n
        self.position += e.shape[0]
        x, self.emphasis_state = deemphasise(s, self.alpha, self.emphasis_state)
        return x


def sample_coefficients(mel: Tensor, profile: FeatureProfile, order: int, samples: int) -> Tensor:
    """Per-sample predictor coefficients of a batch of mels: [B, n_mels, F] -> [B, samples, order]
    (float32; computed in float64 outside autocast; frame ``t // hop`` holds sample ``t``)."""
    with torch.autocast(mel.device.type, enabled=False):
        frames = lpc_from_mel(mel.double(), profile, order)
    return per_sample(frames, profile.hop_length, samples).float()


def synthesised(blocks: Iterable[Tensor], mel: Tensor | None, profile: FeatureProfile, order: int) -> Iterator[Tensor]:
    """Excitation blocks (1-D tensors, in order) -> audio blocks (float32 CPU tensors of the same
    lengths) through :class:`Synthesis` with the coefficients of ``mel`` [n_mels, F], computed as the
    blocks reach them. ``order`` 0: the blocks are audio already and pass unchanged (``mel`` may then be
    None). The generation of WaveNet and WaveGlow streams through this whatever their ``lpc_order``."""
    if not order:
        yield from blocks
        return
    synthesis = Synthesis(MelCoefficients(mel, profile, order), profile.hop_length)
    for block in blocks:
        yield torch.from_numpy(synthesis.process(block.detach().float().cpu().numpy().reshape(-1)))


__all__ = [
    "DEFAULT_ORDER", "MAX_ORDER", "PREEMPHASIS", "MelCoefficients", "Synthesis", "autocorrelation_from_power",
    "deemphasise", "excitation", "levinson", "lpc_from_mel", "mel_to_power", "per_sample", "predict", "predictor_and_error",
    "preemphasis_response", "preemphasise",
    "sample_coefficients", "synthesised",
]
