"""A streaming source-filter synthesiser for WORLD tracks: phase-continuous across blocks.

``pyworld.synthesize`` renders a whole utterance; rendering each live window separately restarts the
glottal pulse train at every window, and cross-fading two pulse trains with different phases breaks
the periodicity (pitch trackers, and ears, lose it). This synthesiser keeps the pulse phase and the
decaying tails of earlier pulses between calls, so consecutive blocks join without seams.

Model (the WORLD synthesis idea, simplified): pulses at the instants where the running phase
∫ F0 dt crosses an integer (unvoiced stretches use a fixed 200 Hz noise-burst rate). Each pulse is the
minimum-phase impulse response of the amplitude envelope sqrt(sp) (cepstral folding), excited by a
mix of an impulse (weight sqrt(1 − ap)) and a noise burst of one period (weight sqrt(ap)), scaled by
sqrt(period) so loudness does not depend on pitch, placed with sub-sample accuracy and overlap-added.
Its absolute level differs from ``pyworld.synthesize``; callers normalise loudness.

One instance per stream, one thread. Allocates (numpy): never call it from an audio callback.
"""

from __future__ import annotations

import numpy as np

UNVOICED_RATE_HZ = 200.0
_FLOOR = 1e-12


def minimum_phase(amplitude: np.ndarray, n_fft: int) -> np.ndarray:
    """Minimum-phase spectra [P, n_fft // 2 + 1] (complex) with the given amplitudes (same shape)."""
    cep = np.fft.irfft(np.log(np.maximum(amplitude, _FLOOR)), n_fft, axis=-1)
    half = n_fft // 2
    folded = np.zeros_like(cep)
    folded[:, 0] = cep[:, 0]
    folded[:, 1:half] = 2.0 * cep[:, 1:half]
    folded[:, half] = cep[:, half]
    return np.exp(np.fft.rfft(folded, n_fft, axis=-1))


class PulseSynth:
    """Streaming synthesis: ``render(f0, sp, ap, frame_offset)`` → the next ``block`` samples.

    sample_rate: Hz; frame_period: samples between WORLD frames; fft_size: the tracks' FFT size.
    """

    def __init__(self, sample_rate: int, frame_period: int, fft_size: int, seed: int = 0) -> None:
        self.sample_rate = int(sample_rate)
        self.frame_period = int(frame_period)
        self.fft_size = int(fft_size)
        self._phase = 0.0
        self._carry = np.zeros(self.fft_size, dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        bins = self.fft_size // 2 + 1
        self._omega = np.pi * np.arange(bins) / (bins - 1)  # rad/sample for each rfft bin

    def reset(self) -> None:
        self._phase = 0.0
        self._carry[:] = 0.0

    def render(self, f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, block: int) -> np.ndarray:
        """Render ``block`` samples from frames spanning them.

        f0 [F] Hz, sp [F, bins], ap [F, bins]: frame k sits at sample k·frame_period of this block
        (so F >= block / frame_period + 1 frames cover it; the last frame is used for interpolation).
        Returns float64 [block].
        """
        fp = self.frame_period
        t = np.arange(block, dtype=np.float64)
        frame_times = np.arange(f0.shape[0], dtype=np.float64) * fp
        nearest = np.clip(np.rint(t / fp).astype(np.int64), 0, f0.shape[0] - 1)
        voiced = f0[nearest] > 0
        # F0 per sample: interpolate voiced frames only (unvoiced neighbours would drag it to 0).
        f0_filled = f0.copy()
        if np.any(f0 > 0):
            idx = np.flatnonzero(f0 > 0)
            f0_filled = np.interp(frame_times, frame_times[idx], f0[idx])
        rate = np.where(voiced, np.interp(t, frame_times, f0_filled), UNVOICED_RATE_HZ) / self.sample_rate
        phase = self._phase + np.cumsum(rate)
        before = np.concatenate(([self._phase], phase[:-1]))
        crossings = np.flatnonzero(np.floor(phase) > np.floor(before))
        self._phase = float(phase[-1] % 1.0) if block else self._phase
        out = np.zeros(block + self.fft_size, dtype=np.float64)
        out[: self.fft_size] += self._carry
        if crossings.size:
            # Sub-sample pulse position: how far past the integer crossing the phase already is.
            frac = (phase[crossings] - np.floor(phase[crossings])) / rate[crossings]
            frac = np.clip(frac, 0.0, 1.0)
            frames = nearest[crossings]
            period = 1.0 / rate[crossings]
            amp = np.sqrt(np.maximum(sp[frames], 0.0))
            aper = np.clip(ap[frames], 0.0, 1.0)
            aper = np.where(voiced[crossings][:, None], aper, 1.0)
            spectrum = minimum_phase(amp, self.fft_size)
            lengths = np.maximum(np.rint(period).astype(np.int64), 1)
            noise = self._rng.standard_normal((crossings.size, self.fft_size))
            noise *= np.arange(self.fft_size)[None, :] < lengths[:, None]
            noise_spec = np.fft.rfft(noise, axis=-1) / np.sqrt(lengths)[:, None]
            excitation = np.sqrt(1.0 - aper) + np.sqrt(aper) * noise_spec
            # Delay each pulse by (1 - frac) samples so that it lands on its true instant.
            shift = np.exp(-1j * self._omega[None, :] * (1.0 - frac)[:, None])
            pulses = np.fft.irfft(spectrum * excitation * shift, self.fft_size, axis=-1)
            pulses *= np.sqrt(period)[:, None]
            for start, pulse in zip(crossings - 1, pulses, strict=True):
                s = max(int(start), 0)
                out[s : s + self.fft_size] += pulse
        self._carry = out[block : block + self.fft_size].copy()
        return out[:block]
