"""Pitch from mel features, and the periodic source signal a vocoder can lock its pulses to.

The bundled speech vocoders see only the mel, and learn its pitch poorly: the LPC WaveRNN's voiced
frames wander about a semitone around the input's F0 (docs/models.md, "Pitch: what the vocoders get
wrong"). The pitch is in the mel all the same: this module reads it back with DSP, the same function at
training and generation time, so a network can get it as an input instead of having to infer it
(``WaveRNNConfig.pitch_inputs``; measured there, not yet used by a bundled model).

``track(mel, profile)``, per frame (float64 inside):

1. the power spectrum under the mel filters by non-negative least squares (``lpc.mel_to_power``,
   the Griffin-Lim front end's estimate), then its square root (a compressed spectrum weighs the
   harmonics more evenly than the power does);
2. its autocorrelation (inverse real FFT), normalised by lag 0;
3. the strongest normalised peak between the lags of ``F0_MAX`` and ``F0_MIN`` (each lag's value
   lowered by ``SHORT_LAG_BIAS`` per lag, against picking a multiple of the period), refined by a
   parabola through its neighbours -> F0 in Hz; the peak's height over what a steady harmonic tone of
   that period reads (``tone_periodicity``) is the periodicity: about 1 for a periodic frame.

Measured on the six held-out festvox-ru test utterances against WORLD's DIO + StoneMask on the audio
itself: on frames both call voiced (periodicity above 0.5; 81 % of DIO's voiced frames), the median
error is 10 cents, 12 % of them are off by more than 50 cents and 0.8 % by more than 300 (octave
errors). The same measure on the true STFT magnitude instead of the mel's estimate: 9-14 cents.

``SourceTrack(mel, profile).features(start, stop)`` interpolates the frame F0 and periodicity
linearly between frame centres and integrates the F0 to a per-sample phase, block by block (the
phase carried across blocks), and gives the network's inputs ``[v sin(phase), v cos(phase), v,
v pulse(phase)]`` with the voicing ``v`` mapped from the periodicity and a bump at phase 0.

Pure torch (CPU or CUDA), no shared state: safe from any thread.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from studio.engine.audio.features import FeatureProfile
from studio.engine.audio.lpc import mel_to_power

F0_MIN = 75.0
"""Lowest F0 searched (Hz). Below about 80 Hz an 80-band mel at 16 kHz (n_fft 1024) no longer
resolves the harmonics: a steady 70 Hz tone reads as 79 Hz."""
F0_MAX = 400.0
"""Highest F0 searched (Hz)."""
SHORT_LAG_BIAS = 5e-4
"""Subtracted from the normalised autocorrelation per lag sample above the shortest: a double period
must beat the period itself by this much per extra lag."""
VOICING_FLOOR = 0.3
"""Periodicity at and below which a frame counts as unvoiced (``voicing`` 0). On held-out festvox-ru
speech, 8 % of the frames DIO calls unvoiced read above 0.5, 16 % above 0.3 (mostly transitions), and
81 % / 92 % of its voiced frames."""
VOICING_SPAN = 0.4
"""Periodicity above the floor at which a frame counts as fully voiced (``voicing`` 1)."""
PULSE_SHARPNESS = 15.0
"""``exp(k (cos(phase) - 1))``: the pulse input's bump around phase 0, half height at +-0.3 rad."""
SOURCE_FEATURES = 4
"""Per-sample inputs ``source_features`` gives: v sin, v cos, v, v pulse."""


def _lag_range(profile: FeatureProfile) -> tuple[int, int]:
    """The autocorrelation lags searched, [lo, hi] (samples). An n_fft too short for ``F0_MIN``'s
    period (tiny test profiles) searches the periods it holds."""
    sr, n_fft = profile.sample_rate, profile.n_fft
    hi = min(int(math.ceil(sr / F0_MIN)), n_fft // 2 - 2)
    lo = max(1, min(int(math.floor(sr / F0_MAX)), hi - 1))
    if hi <= lo:
        raise ValueError(f"n_fft {n_fft} is too short to track pitch")
    return lo, hi


def _autocorrelation(mel: Tensor, profile: FeatureProfile) -> Tensor:
    """Normalised autocorrelation of the compressed spectrum under the mel: [..., N, n_fft] float64."""
    r = torch.fft.irfft(mel_to_power(mel, profile).sqrt(), n=profile.n_fft, dim=-1)
    return r / r[..., :1].clamp_min(1e-30)


CALIBRATION_STEP = 3
"""``tone_periodicity`` synthesises a tone every this many lags and interpolates between them."""


@functools.lru_cache(maxsize=8)
def tone_periodicity(profile: FeatureProfile) -> Tensor:
    """What a steady harmonic tone reads at its own period, per lag ``lo..hi + 1``: [hi - lo + 2]
    float64. The mel's smoothing of the harmonics makes the autocorrelation's peaks fall with the
    lag (at 16 kHz, n_fft 1024, 80 mels: 0.83 for a 400 Hz tone, 0.58 at 160 Hz, 0.24 at 75 Hz):
    ``track`` divides by this, so a periodic frame reads about 1 whatever its pitch. Computed once
    per profile (0.3 s here) from one frame of a tone (1/h harmonics up to 0.45 x the sample rate)
    at every ``CALIBRATION_STEP``-th lag, linear between."""
    from studio.engine.audio.features import compute_mel

    lo, hi = _lag_range(profile)
    sr, n = profile.sample_rate, profile.n_fft + 2 * profile.hop_length
    t = np.arange(n) / sr
    lags = np.unique(np.append(np.arange(lo, hi + 2, CALIBRATION_STEP), hi + 1))
    tones = []
    for lag in lags:
        f0 = sr / lag
        h = np.arange(1, max(2, int(0.45 * sr / f0)))
        tones.append((np.sin(2 * np.pi * f0 * np.outer(h, t)) / h[:, None]).sum(0))
    tones = np.stack(tones).astype(np.float32)
    tones *= 0.3 / np.abs(tones).max(axis=1, keepdims=True)
    mel = torch.as_tensor(np.asarray(compute_mel(tones, profile))).reshape(len(lags), profile.n_mels, -1)
    middle = mel.shape[-1] // 2
    r = _autocorrelation(mel[..., middle : middle + 1], profile)[:, 0]  # [len(lags), n_fft]
    read = r[torch.arange(len(lags)), torch.as_tensor(lags)].numpy()
    every = np.interp(np.arange(lo, hi + 2), lags, read)
    return torch.from_numpy(np.maximum(every, 0.1))


def track(mel: Tensor, profile: FeatureProfile) -> tuple[Tensor, Tensor]:
    """mel [..., n_mels, N] of ``profile`` -> (F0 [..., N] in Hz, periodicity [..., N]), both float64.
    The periodicity is the autocorrelation peak over what a steady tone of that period reads
    (``tone_periodicity``): about 1 for a periodic frame, near 0 for noise. Every frame gets an F0
    (unvoiced frames an arbitrary one): ``voicing`` tells them apart. Each frame's values depend on
    that frame alone."""
    lo, hi = _lag_range(profile)
    r = _autocorrelation(mel, profile)
    window = r[..., lo : hi + 2]  # one lag past hi for the parabola
    lags = torch.arange(lo, hi + 2, dtype=r.dtype, device=r.device)
    scored = window[..., :-1] - SHORT_LAG_BIAS * (lags[:-1] - lo)
    k = scored.argmax(dim=-1, keepdim=True)  # index into window
    centre = window.gather(-1, k)
    left = window.gather(-1, (k - 1).clamp_min(0))
    right = window.gather(-1, k + 1)
    curvature = left - 2.0 * centre + right
    shift = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp_max(-1e-12), torch.zeros_like(centre))
    lag = lags[k] + shift.clamp(-0.5, 0.5)
    reference = tone_periodicity(profile).to(centre)[k]
    return (profile.sample_rate / lag).squeeze(-1), (centre / reference).squeeze(-1)


def voicing(periodicity: Tensor) -> Tensor:
    """Periodicity [...] (``track``'s) -> voicing in [0, 1]: 0 at or below ``VOICING_FLOOR``, 1 from
    ``VOICING_FLOOR + VOICING_SPAN`` up, linear between."""
    return ((periodicity - VOICING_FLOOR) / VOICING_SPAN).clamp(0.0, 1.0)


def per_sample(frames: Tensor, hop: int, start: int, stop: int, first: int = 0, total: int | None = None) -> Tensor:
    """Frame values [B, n] (``frames[:, i]`` is frame ``first + i`` of ``total``, frame ``f`` centred on
    sample ``(f + 0.5) * hop``) -> samples [start, stop) [B, stop - start], linearly interpolated
    between frame centres and held before the first and after the last of the ``total`` frames."""
    total = first + frames.shape[-1] if total is None else total
    t = torch.arange(start, stop, dtype=torch.float64, device=frames.device) / hop - 0.5
    pos = t.clamp(0.0, total - 1.0) - first
    if frames.shape[-1] and (pos.numel() and (pos.min() < -1e-9 or pos.max() > frames.shape[-1] - 1 + 1e-9)):
        raise ValueError(f"samples [{start}, {stop}) need frames outside [{first}, {first + frames.shape[-1]})")
    pos = pos.clamp(0.0, frames.shape[-1] - 1.0)
    i0 = pos.floor().long().clamp(max=frames.shape[-1] - 1)
    i1 = (i0 + 1).clamp(max=frames.shape[-1] - 1)
    w = (pos - i0.to(pos.dtype)).to(frames.dtype)
    return frames[..., i0] * (1.0 - w) + frames[..., i1] * w


def wrap(phases: Tensor) -> Tensor:
    """Radians -> [-pi, pi)."""
    return torch.remainder(phases + math.pi, 2.0 * math.pi) - math.pi


class SourceTrack:
    """The source inputs of one mel, computed block by block as generation reaches them.

    ``mel`` [B, n_mels, N]; ``start_phase`` [B] (radians; default 0): the phase of sample 0.
    ``features(start, stop)`` -> [B, stop - start, SOURCE_FEATURES] equals the same call's slice of
    ``features(0, N * hop)`` to float rounding: frame pitch is computed ``block_frames`` frames at a
    time (each frame's depends on that frame alone) and the phase at every block boundary is kept, so
    a stream's first block does not wait for a long input's whole track. Samples past the last frame
    hold its pitch. Runs on the calling thread.
    """

    def __init__(self, mel: Tensor, profile: FeatureProfile, start_phase: Tensor | None = None,
                 block_frames: int = 64) -> None:
        self.mel, self.profile = mel, profile
        self.hop, self.frames, self.block = profile.hop_length, mel.shape[-1], block_frames
        self.pitch: dict[int, tuple[Tensor, Tensor]] = {}
        start = torch.zeros(mel.shape[0], dtype=torch.float64, device=mel.device)
        self.boundary = [start if start_phase is None else start_phase.to(start)]  # phase at block k's first sample

    def _frames(self, f0: int, f1: int) -> tuple[Tensor, Tensor]:
        """(F0, periodicity) of frames [f0, f1) (clipped to the mel) from cached blocks: [B, n] each."""
        f0, f1 = max(f0, 0), min(f1, self.frames)
        parts_f, parts_p = [], []
        for k in range(f0 // self.block, -(-f1 // self.block)):
            if k not in self.pitch:
                lo = k * self.block
                self.pitch[k] = track(self.mel[..., lo : lo + self.block], self.profile)
            parts_f.append(self.pitch[k][0])
            parts_p.append(self.pitch[k][1])
        first = (f0 // self.block) * self.block
        f, p = torch.cat(parts_f, dim=-1), torch.cat(parts_p, dim=-1)
        return f[..., f0 - first : f1 - first], p[..., f0 - first : f1 - first]

    def _per_sample(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """(F0, periodicity) per sample of [start, stop): [B, n] each."""
        a, b = start // self.hop - 1, -(-stop // self.hop) + 1
        f, p = self._frames(a, b)
        first = max(a, 0)
        return (per_sample(f, self.hop, start, stop, first, self.frames),
                per_sample(p, self.hop, start, stop, first, self.frames))

    def _phase(self, start: int, stop: int, f0: Tensor) -> Tensor:
        """Unwrapped phase of samples [start, stop) given their F0 [B, n]; block boundaries up to
        ``start`` are integrated first."""
        span = self.block * self.hop
        while len(self.boundary) <= start // span:
            k = len(self.boundary) - 1
            f, _ = self._per_sample(k * span, (k + 1) * span)
            self.boundary.append(self.boundary[k] + (2.0 * math.pi / self.profile.sample_rate) * f.sum(-1))
        k = start // span
        lead, _ = self._per_sample(k * span, start) if start > k * span else (f0[..., :0], None)
        steps = (2.0 * math.pi / self.profile.sample_rate) * torch.cat([lead, f0], dim=-1)
        acc = torch.cumsum(steps, dim=-1) - steps  # the phase before each sample's own step
        return self.boundary[k].unsqueeze(-1) + acc[..., lead.shape[-1] :]

    def contours(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """(F0 in Hz, periodicity) per sample of [start, stop): [B, stop - start] float64 each."""
        return self._per_sample(start, stop)

    def features(self, start: int, stop: int) -> Tensor:
        """Source inputs of samples [start, stop): [B, stop - start, SOURCE_FEATURES] float32."""
        f0, periodicity = self._per_sample(start, stop)
        return source_features(wrap(self._phase(start, stop, f0)), voicing(periodicity))

    def phases(self, stop: int) -> Tensor:
        """Wrapped phase of samples [0, stop): [B, stop] float64."""
        f0, _ = self._per_sample(0, stop)
        return wrap(self._phase(0, stop, f0))


def source_features(phases: Tensor, voiced: Tensor) -> Tensor:
    """Phase [B, T] and per-sample voicing [B, T] -> the network's source inputs [B, T, 4]:
    ``[v sin(phase), v cos(phase), v, v pulse(phase)]`` (float32), the pulse a bump at phase 0
    (``PULSE_SHARPNESS``): where a pitch model learns to put the excitation's pulses, marked so that
    one weight can put them there."""
    v = voiced.to(torch.float64)
    cos = torch.cos(phases)
    pulse = torch.exp(PULSE_SHARPNESS * (cos - 1.0))
    return torch.stack([v * torch.sin(phases), v * cos, v, v * pulse], dim=-1).to(torch.float32)
