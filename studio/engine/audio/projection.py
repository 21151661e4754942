"""Spectral projection: make a vocoder's output have exactly the mel it was asked for, keeping its detail.

A vocoder's output should have the mel it was conditioned on; on this project's training budget the
bundled networks' outputs do not (their envelopes and band levels are off: MCD 4.5-5.9 dB where
Griffin-Lim reaches 3.9). The projection corrects that and nothing else. Each pass:

1. STFT of the current signal (the projection's framing, below) -> its mel energies per frame, with
   the profile's filterbank and power;
2. per mel band, the gain that brings the band to the target mel's energy (the conditioning mel,
   decompressed), ``(target / current) ** (1 / power)``, clamped to +-``MAX_GAIN_DB``;
3. spread to the STFT bins through the filterbank (each bin's gain the filter-weighted mean of the
   gains of the bands it belongs to; 0 for bins no filter covers, which the mel says nothing about, as
   Griffin-Lim leaves them empty), applied to the complex STFT, so what lies within a band (the
   vocoder's harmonics, its phase) is kept;
4. weighted overlap-add back to a signal.

One pass cannot reach the target exactly (overlap-add of modified frames changes the frames again), so
``iterations`` more passes follow; the output's mel converges on the target. Unlike Griffin-Lim, which
replaces every magnitude with an estimate made under the mel filters and has to invent a phase, the
projection starts from and stays near a real signal. Measured in docs/models.md ("Spectral projection").

Framing (the projection's own, fixed so that a stream can reproduce it exactly): frame ``f`` covers
samples ``[f * hop - left, f * hop - left + n_fft)`` with the profile's ``left`` (``frame_padding``),
Hann window of the profile, zeros outside the signal; a signal of ``T`` samples has frames
``0 .. ceil(T / hop) - 1`` (mel frame ``f`` is frame ``f``'s target; frames past the mel's last use the
last one's). The inverse is weighted overlap-add divided by the summed squared window of the signal's
frames.

``project(audio, mel, profile, iterations)`` is the plain computation on a whole signal;
``Projector`` does the same block by block for a stream: each chunk of output frames is computed from
the chunk and ``margin_frames`` frames either side. Every pass spreads a frame's influence by one window
(``ceil(n_fft / hop)`` frames), but what reaches a frame from further away shrinks fast (the gains are
smooth and every pass pulls each frame towards its own target): with three windows of margin the
streamed result differs from the whole-signal one by 159-165 dB below the signal at 32 passes and
119-122 dB at 64 (white noise and speech; at 32 passes two windows give 106 dB, one 59-60 dB), so the
margin stops growing at three windows and the joined blocks equal ``project`` on the whole signal to
float32 rounding, at a delay of the margin plus a chunk.

Pure torch/numpy on the calling thread, no shared state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from studio.engine.audio.features import FeatureProfile, decompress, frame_padding, mel_filterbank

MAX_ITERATIONS = 128
"""The most passes after the first a projection takes (each costs about 2 ms of CPU per second of
audio at the speech16k profile; the delay does not grow past three windows of margin)."""
CHUNK_FRAMES = 64
"""Output frames a ``Projector`` computes at a time (64 x 12.5 ms = 0.8 s at the speech16k hop), after a
first chunk of ``FIRST_CHUNK_FRAMES`` that lets a stream start sooner."""
FIRST_CHUNK_FRAMES = 16
MARGIN_WINDOWS = 3
"""The most windows of margin a chunk is computed with (see the module doc)."""
MAX_GAIN_DB = 60.0
"""The largest correction one pass applies to a band, either way (a silent band cannot be blown up
from float noise in one step)."""


def check_iterations(iterations: int | None) -> None:
    """ValueError unless ``iterations`` is None (no projection) or 0 .. ``MAX_ITERATIONS``."""
    if iterations is None:
        return
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
        raise ValueError(f"spectral projection iterations must be a whole number or None, got {iterations!r}")
    if not 0 <= int(iterations) <= MAX_ITERATIONS:
        raise ValueError(f"spectral projection iterations must be in 0..{MAX_ITERATIONS}, got {iterations}")


def check_model_setting(iterations: int | None, n_mels: int) -> None:
    """A model config's ``spectral_projection``: ``check_iterations``, and a mel to take targets from."""
    check_iterations(iterations)
    if iterations is not None and not n_mels:
        raise ValueError("spectral_projection needs a mel (n_mels > 0): the projection's targets come from it")


def margin_frames(profile: FeatureProfile, iterations: int) -> int:
    """Frames on each side of a chunk it is computed with: one frame's window reaches ``ceil(n_fft /
    hop)`` frames and each of the ``iterations + 1`` passes (analysis, then synthesis) spreads a change
    that far once more, up to ``MARGIN_WINDOWS`` windows, past which the influence is below float
    rounding (module doc)."""
    return min(iterations + 1, MARGIN_WINDOWS) * math.ceil(profile.n_fft / profile.hop_length) + 1


def _window(profile: FeatureProfile) -> torch.Tensor:
    w = torch.hann_window(profile.win_length, periodic=True, dtype=torch.float64)
    if profile.win_length < profile.n_fft:
        pad = profile.n_fft - profile.win_length
        w = torch.nn.functional.pad(w, (pad // 2, pad - pad // 2))
    return w


class _Frames:
    """Analysis and synthesis of frames ``[first, first + count)`` of a signal of ``total`` samples,
    given (or giving) the samples ``[start, stop)`` those frames cover (clipped to the signal)."""

    def __init__(self, profile: FeatureProfile, first: int, count: int, total: int) -> None:
        self.p, self.first, self.count, self.total = profile, first, count, total
        self.left, _ = frame_padding(profile)
        self.window = _window(profile)
        self.origin = first * profile.hop_length - self.left  # sample index of the first frame's start
        self.span = (count - 1) * profile.hop_length + profile.n_fft
        self.start, self.stop = max(self.origin, 0), min(self.origin + self.span, total)
        frames_all = math.ceil(total / profile.hop_length)
        # the summed squared window of ALL the signal's frames over this span (exact in the interior)
        lo = max(0, first - math.ceil(profile.n_fft / profile.hop_length))
        hi = min(frames_all, first + count + math.ceil(profile.n_fft / profile.hop_length))
        envelope = torch.zeros(self.span, dtype=torch.float64)
        for f in range(lo, hi):
            a = f * profile.hop_length - self.left - self.origin
            s0, s1 = max(a, 0), min(a + profile.n_fft, self.span)
            if s1 > s0:
                envelope[s0:s1] += self.window[s0 - a : s1 - a] ** 2
        self.envelope = envelope

    def analyse(self, samples: torch.Tensor) -> torch.Tensor:
        """samples [stop - start] (float64) -> complex frames [count, n_fft // 2 + 1]."""
        padded = torch.zeros(self.span, dtype=torch.float64)
        padded[self.start - self.origin : self.stop - self.origin] = samples
        frames = padded.unfold(0, self.p.n_fft, self.p.hop_length)[: self.count]
        return torch.fft.rfft(frames * self.window, dim=-1)

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """complex frames [count, n_fft // 2 + 1] -> samples [stop - start] (weighted overlap-add)."""
        chunks = torch.fft.irfft(spec, n=self.p.n_fft, dim=-1) * self.window  # [count, n_fft]
        signal = torch.nn.functional.fold(
            chunks.T.unsqueeze(0), output_size=(1, self.span), kernel_size=(1, self.p.n_fft), stride=(1, self.p.hop_length)
        ).reshape(self.span)
        signal = signal / torch.where(self.envelope > 1e-8, self.envelope, torch.ones_like(self.envelope))
        return signal[self.start - self.origin : self.stop - self.origin]


@functools.lru_cache(maxsize=8)
def _filters(profile: FeatureProfile) -> tuple[torch.Tensor, torch.Tensor]:
    """(filterbank [n_mels, F], per-bin weight sum [F]) in float64."""
    basis = torch.from_numpy(mel_filterbank(profile)).to(torch.float64)
    return basis, basis.sum(dim=0)


def _pass(samples: torch.Tensor, target: torch.Tensor, frames: _Frames) -> torch.Tensor:
    """One pass (module doc, 1-4) over the frames' span: samples -> samples; target [count, n_mels]."""
    basis, weight = _filters(frames.p)
    spec = frames.analyse(samples)
    current = spec.abs().pow(frames.p.power) @ basis.T  # [count, n_mels]
    limit = 10.0 ** (MAX_GAIN_DB / 20.0)
    band = (target / current.clamp_min(1e-30)).pow(1.0 / frames.p.power).clamp(1.0 / limit, limit)
    gain = torch.where(weight > 0, (band @ basis) / weight.clamp_min(1e-30), torch.zeros_like(weight))
    return frames.synthesise(spec * gain)


def _project_frames(samples: torch.Tensor, target: torch.Tensor, frames: _Frames, iterations: int) -> torch.Tensor:
    """``iterations + 1`` passes over the frames' span: samples -> samples."""
    for _ in range(iterations + 1):
        samples = _pass(samples, target, frames)
    return samples


def _targets(mel: np.ndarray, profile: FeatureProfile, first: int, count: int) -> torch.Tensor:
    """The mel energies frames [first, first + count) are brought to: [count, n_mels] float64 (the
    profile's compression undone); frames past the mel's last use the last one's."""
    index = np.minimum(np.arange(first, first + count), mel.shape[-1] - 1)
    return decompress(torch.from_numpy(mel[:, index].T.astype(np.float64)), profile)


def project(audio: np.ndarray, mel: np.ndarray, profile: FeatureProfile, iterations: int) -> np.ndarray:
    """The plain projection of a whole signal: audio [T] and its mel [n_mels, N] -> float32 [T] in [-1, 1]."""
    check_iterations(iterations)
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if audio.size == 0:
        return np.zeros(0, np.float32)
    count = math.ceil(audio.size / profile.hop_length)
    frames = _Frames(profile, 0, count, audio.size)
    target = _targets(np.asarray(mel, dtype=np.float32), profile, 0, count)
    out = _project_frames(torch.from_numpy(audio[frames.start : frames.stop]), target, frames, int(iterations))
    return out.clamp(-1.0, 1.0).numpy().astype(np.float32)


class Projector:
    """``project`` block by block: feed the vocoder's blocks in order with ``process`` and take what
    it returns, then ``finish()`` for the rest. The joined output equals ``project`` on the joined
    input (to float rounding) for any block sizes; output lags the input by ``margin_frames`` plus up to
    a chunk of frames (``FIRST_CHUNK_FRAMES`` first, then ``chunk_frames``, default ``CHUNK_FRAMES``).
    ``total``: the length the stream is meant to reach;
    a stream that ends early (cancelled) is projected as a signal of the length it reached."""

    def __init__(self, mel: np.ndarray, profile: FeatureProfile, iterations: int, total: int,
                 chunk_frames: int | None = None) -> None:
        check_iterations(iterations)
        if total < 1:
            raise ValueError(f"a projected stream needs at least one sample, got total={total}")
        self.mel, self.profile, self.iterations = np.asarray(mel, dtype=np.float32), profile, int(iterations)
        self.margin = margin_frames(profile, self.iterations)
        self.total = int(total)
        self.chunk = int(chunk_frames) if chunk_frames is not None else CHUNK_FRAMES
        if self.chunk < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.left, _ = frame_padding(profile)
        self.received = np.zeros(0, np.float64)  # input samples [offset, offset + len)
        self.offset = 0
        self.emitted = 0  # output samples given out; always a multiple of hop until the end

    def _frame_end(self, frame: int) -> int:
        """One past the last sample frame ``frame``'s window covers."""
        return frame * self.profile.hop_length - self.left + self.profile.n_fft

    def _compute(self, first_out: int, last_out: int, total: int) -> np.ndarray:
        """Output samples of frames [first_out, last_out) of a signal of ``total`` samples."""
        hop = self.profile.hop_length
        frames_all = math.ceil(total / hop)
        g0, g1 = max(first_out - self.margin, 0), min(last_out + self.margin, frames_all)
        frames = _Frames(self.profile, g0, g1 - g0, total)
        samples = self.received[frames.start - self.offset : frames.stop - self.offset]
        out = _project_frames(torch.from_numpy(samples), _targets(self.mel, self.profile, g0, g1 - g0), frames,
                              self.iterations)
        a, b = first_out * hop, min(last_out * hop, total)
        return out[a - frames.start : b - frames.start].clamp(-1.0, 1.0).numpy().astype(np.float32)

    def _forget(self) -> None:
        """Drop input no later chunk needs (it starts ``margin`` frames before the next output frame)."""
        keep_from = max((self.emitted // self.profile.hop_length - self.margin) * self.profile.hop_length - self.left, 0)
        if keep_from > self.offset:
            self.received = self.received[keep_from - self.offset :]
            self.offset = keep_from

    def process(self, block: np.ndarray) -> list[np.ndarray]:
        """Take the next input block; return the output blocks now complete (possibly none)."""
        block = np.asarray(block, dtype=np.float64).reshape(-1)
        self.received = np.concatenate([self.received, block])
        have = self.offset + self.received.size
        hop, frames_all = self.profile.hop_length, math.ceil(self.total / self.profile.hop_length)
        out = []
        while True:
            first = self.emitted // hop
            last = min(first + (self.chunk if first else min(FIRST_CHUNK_FRAMES, self.chunk)), frames_all)
            if last <= first or last == frames_all:
                break  # the final chunk waits for finish(): it is computed with the signal's true end
            needed = min(self._frame_end(min(last + self.margin, frames_all) - 1), self.total)
            if have < needed:
                break
            out.append(self._compute(first, last, self.total))
            self.emitted = last * hop
            self._forget()
        return out

    def finish(self) -> list[np.ndarray]:
        """The rest of the output, with the stream's end where the input ended (``total`` or earlier)."""
        have = self.offset + self.received.size
        total = min(have, self.total)
        out = []
        hop = self.profile.hop_length
        while self.emitted < total:
            first = self.emitted // hop
            last = min(first + self.chunk, math.ceil(total / hop))
            out.append(self._compute(first, last, total))
            self.emitted = min(last * hop, total)
        return out


def projected(blocks: Iterable[np.ndarray], projector: Projector) -> Iterator[np.ndarray]:
    """``blocks`` through ``projector``: its output blocks as they complete, then the rest once
    ``blocks`` ends (non-empty blocks only)."""
    for block in blocks:
        yield from (out for out in projector.process(block) if out.size)
    yield from (out for out in projector.finish() if out.size)
