"""A streaming rational resampler with a fixed delay and a deterministic output count.

The live converter needs every hop of input to come back as exactly one hop of output, at a fixed
delay. soxr's streaming resampler holds samples back and releases them in irregular chunks (48 kHz →
16 kHz in 1440-frame blocks came out as 0, 0, 490, 0, 0, 489, … samples; 16 kHz → 48 kHz as 1468
per 480 in), which made the output ring's level wander by tens of milliseconds and the live output
underrun although the converter kept up. This resampler is a plain polyphase FIR (Kaiser-windowed
sinc, linear phase): output sample ``n`` is computed as soon as the input sample it needs last has
arrived, so ``k`` input samples always give ``floor((total_in) · L / M)``-many outputs in total —
1440 in at 48 kHz gives exactly 480 out at 16 kHz and back, every time.

Cost: ``taps_per_phase`` multiply-adds per output sample (about 100 for 48 kHz ↔ 16 kHz). Numpy on
the calling thread; allocates, so never call it from an audio callback.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

DEFAULT_ATTENUATION_DB = 70.0
PASSBAND = 0.90  # passband edge as a fraction of the lower rate's Nyquist frequency


def design_lowpass(from_sr: int, to_sr: int, attenuation_db: float = DEFAULT_ATTENUATION_DB) -> tuple[np.ndarray, int, int]:
    """The prototype filter (float64 [N], N a multiple of L, gain L) and the factors (L up, M down)."""
    g = math.gcd(int(from_sr), int(to_sr))
    up, down = int(to_sr) // g, int(from_sr) // g
    fast = from_sr * up  # the filter runs (conceptually) at the common rate
    nyquist = 0.5 * min(from_sr, to_sr)
    width = nyquist * (1.0 - PASSBAND)
    numtaps, beta = signal.kaiserord(attenuation_db, width / (0.5 * fast))
    numtaps = int(math.ceil(numtaps / up)) * up
    taps = signal.firwin(numtaps, nyquist * (1.0 - 0.5 * (1.0 - PASSBAND)), window=("kaiser", beta), fs=fast)
    return taps * up, up, down


class PolyphaseResampler:
    """Stream resampling ``from_sr`` → ``to_sr`` (whole Hz), mono float [n] blocks in, float32 blocks out.

    ``delay`` is the filter's group delay in output samples (output sample ``n`` shows input time
    ``(n - delay) / to_sr``). One instance per stream, one thread.
    """

    def __init__(self, from_sr: int, to_sr: int, attenuation_db: float = DEFAULT_ATTENUATION_DB) -> None:
        if from_sr <= 0 or to_sr <= 0 or int(from_sr) != from_sr or int(to_sr) != to_sr:
            raise ValueError(f"rates must be positive whole Hz, got {from_sr} → {to_sr}")
        self.from_sr, self.to_sr = int(from_sr), int(to_sr)
        taps, self.up, self.down = design_lowpass(self.from_sr, self.to_sr, attenuation_db)
        self.taps_per_phase = taps.shape[0] // self.up
        # phases[p, k] = taps[p + k·L]: the weights of x[i - k] for an output at phase p.
        self._phases = np.ascontiguousarray(taps.reshape(self.taps_per_phase, self.up).T)
        self.delay = (taps.shape[0] - 1) / 2.0 / self.down
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next block starts at input sample 0 (preceded by silence)."""
        k = self.taps_per_phase
        self._history = np.zeros(k - 1, dtype=np.float64)  # input samples -(k-1) … -1
        self._consumed = 0  # global index of the first sample after the history
        self._next_out = 0

    def _filter(self, buf: np.ndarray, start: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Outputs whose newest input sample is ``buf[start[i]]`` at filter phase ``phase[i]``."""
        k = self.taps_per_phase
        windows = np.lib.stride_tricks.sliding_window_view(buf, k)[:, ::-1]  # windows[j, i] = buf[j + k-1 - i]
        first = start - (k - 1)
        if self.up == 1:  # pure decimation: one phase, evenly spaced windows (a strided view, no copy)
            return windows[first[0] : first[-1] + 1 : self.down] @ self._phases[0]
        if self.down == 1 and phase[0] == 0 and first.size % self.up == 0:
            # pure interpolation: each input window gives L consecutive outputs, one per phase
            return (windows[first[0] : first[-1] + 1] @ self._phases.T).reshape(-1)
        return np.einsum("nk,nk->n", windows[first], self._phases[phase])

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed float [n] input; returns every output sample that the input so far determines (float32)."""
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        k = self.taps_per_phase
        buf = np.concatenate([self._history, x])  # buf[j] is input sample (consumed - (k-1) + j)
        total = self._consumed + x.shape[0]
        # Output n needs input index floor(n·M / L) <= total - 1.
        last = (total * self.up - 1) // self.down if total else -1
        n = np.arange(self._next_out, last + 1, dtype=np.int64)
        out = np.zeros(0, dtype=np.float32)
        if n.size:
            pos = n * self.down
            newest = pos // self.up  # the newest input sample each output uses
            phase = pos % self.up
            start = newest - (self._consumed - (k - 1))  # index in buf of that sample
            out = self._filter(buf, start, phase).astype(np.float32)
            self._next_out = int(last) + 1
        self._history = buf[-(k - 1) :] if k > 1 else np.zeros(0)
        self._consumed = total
        return out
