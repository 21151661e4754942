"""Block-by-block conversion for live use: a fixed delay, no look at the future beyond ``lookahead``.

:class:`BlockConverter` takes the input as consecutive hops of ``hop`` samples at ``sample_rate``
(16 kHz by default) and returns one hop of converted audio per hop in. Output sample ``j`` renders
input sample ``j - delay`` (``delay = lookahead``): a fixed algorithmic delay, so the live converter's
latency is known exactly.

Per hop it analyses a window of ``context + hop + lookahead`` input samples with WORLD, converts the
tracks (voice mapping, pitch, formants, whisper) and renders the current hop's frames with a
phase-continuous :class:`PulseSynth` (separately synthesised windows would restart the pulse train at
every seam). Speaker mapping uses running statistics of the live input (the
utterance statistics of the offline path), starting from the source voice when one is given, else from
the target's own (no change) and moving towards the speaker's as voiced speech accumulates. What the
voice's frame matching needs per voice (its key index, the warp estimator) is built in the constructor.
A noise gate skips analysis when the hop is quieter than ``gate_db`` (and fades to silence).

Not thread-safe: one worker thread owns a BlockConverter. Allocates (numpy, WORLD): never call it
from an audio callback.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from studio.engine.convert.mapping import SourceStats, convert_to_voice, prepare_short_blocks
from studio.engine.convert.pulsesynth import PulseSynth
from studio.engine.convert.transforms import apply_transform
from studio.engine.convert.voice import SPEECH_RANGE_DB
from studio.engine.convert.world import analyze_frames, code_envelope, pyworld

LIVE_SAMPLE_RATE = 16000
FRAME_PERIOD_MS = 5.0
# 20 ms: each 10 ms of hop costs 15 ms of live latency (collecting it, plus half a hop of processing
# allowance in the output margin); a hop costs ~1 ms of WORLD here either way (the window is mostly context).
DEFAULT_HOP_MS = 20.0
DEFAULT_LOOKAHEAD_MS = 15.0
DEFAULT_CONTEXT_MS = 80.0  # DIO drops voicing in much shorter windows
DEFAULT_GATE_DB = -55.0
GATE_HOLD_MS = 250.0
LIVE_F0_FLOOR = 70.0
GAIN_SMOOTHING = 0.15  # weight of the newest hop in the output level follower
RUNNING_STATS_FRAMES = 6000  # running statistics forget at this time constant (30 s of voiced frames)


@dataclass
class BlockTiming:
    """What the last hop cost: seconds of processing and whether the gate let it through."""

    seconds: float = 0.0
    gated: bool = False


class RunningStats:
    """Exponentially weighted mean/variance of the live input's log-F0 and coded envelopes.

    Starts from ``prior`` (counted as ``prior_frames`` frames) so the first seconds are stable.
    """

    def __init__(self, prior: SourceStats, prior_frames: float = 400.0) -> None:
        self.lf0 = [prior.lf0_mean, prior.lf0_std**2]
        self.voiced = [prior.env_mean_voiced.copy(), prior.env_std_voiced**2]
        self.unvoiced = [prior.env_mean_unvoiced.copy(), prior.env_std_unvoiced**2]
        self.weight_v = prior_frames
        self.weight_u = prior_frames / 2

    @staticmethod
    def _update(state: list, x: np.ndarray, weight: float) -> float:
        n = x.shape[0]
        if n == 0:
            return weight
        total = min(weight + n, RUNNING_STATS_FRAMES)
        a = n / total
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        old_mean = state[0]
        state[0] = (1 - a) * old_mean + a * mean
        state[1] = (1 - a) * (state[1] + (old_mean - state[0]) ** 2) + a * (var + (mean - state[0]) ** 2)
        return total

    def update(self, lf0: np.ndarray, env_voiced: np.ndarray, env_unvoiced: np.ndarray) -> None:
        if lf0.shape[0]:
            self._update(self.lf0, lf0, self.weight_v)
            self.weight_v = self._update(self.voiced, env_voiced, self.weight_v)
        if env_unvoiced.shape[0]:
            self.weight_u = self._update(self.unvoiced, env_unvoiced, self.weight_u)

    def stats(self) -> SourceStats:
        return SourceStats(
            float(self.lf0[0]), float(max(math.sqrt(max(self.lf0[1], 0.0)), 1e-3)),
            self.voiced[0], np.maximum(np.sqrt(self.voiced[1]), 1e-3),
            self.unvoiced[0], np.maximum(np.sqrt(self.unvoiced[1]), 1e-3),
        )


class BlockConverter:
    """Streaming WORLD conversion; see the module docstring. ``target`` is a ``ConversionTarget``."""

    def __init__(
        self,
        target,
        *,
        sample_rate: int = LIVE_SAMPLE_RATE,
        hop_ms: float = DEFAULT_HOP_MS,
        lookahead_ms: float = DEFAULT_LOOKAHEAD_MS,
        context_ms: float = DEFAULT_CONTEXT_MS,
        gate_db: float | None = DEFAULT_GATE_DB,
    ) -> None:
        fp = int(round(sample_rate * FRAME_PERIOD_MS / 1000.0))
        self.sample_rate = int(sample_rate)
        self.frame = fp
        self.hop = max(fp, int(round(hop_ms * sample_rate / 1000.0 / fp)) * fp)
        self.lookahead = max(fp, int(round(lookahead_ms * sample_rate / 1000.0 / fp)) * fp)
        self.context = max(2 * fp, int(round(context_ms * sample_rate / 1000.0 / fp)) * fp)
        if target.voice is not None and target.voice.sample_rate != sample_rate:
            raise ValueError(f"voice {target.voice.name!r} is at {target.voice.sample_rate} Hz; run the block converter at that rate")
        self.target = target
        self.gate_db = gate_db
        self._window = np.zeros(self.context + self.hop + self.lookahead, dtype=np.float64)
        fft_size = pyworld().get_cheaptrick_fft_size(self.sample_rate, LIVE_F0_FLOOR)
        self._synth = PulseSynth(self.sample_rate, fp, fft_size)
        self._gate_hold = 0
        self._gain = 1.0
        self._gain_fresh = True
        self._loudest = -np.inf
        self.running: RunningStats | None = None
        if target.voice is not None:
            prior = SourceStats.of_voice(target.source if target.source is not None else target.voice)
            self.running = RunningStats(prior)
            prepare_short_blocks(target.voice, target.mapping, self.sample_rate, fft_size)
        self.timing = BlockTiming()

    @property
    def delay(self) -> int:
        """Samples between an input sample and its converted output (fixed)."""
        return self.lookahead

    def reset(self) -> None:
        self._window[:] = 0.0
        self._synth.reset()
        self._gate_hold = 0

    def _gate_open(self, hop: np.ndarray) -> bool:
        if self.gate_db is None:
            return True
        rms = float(np.sqrt(np.mean(hop * hop))) if hop.size else 0.0
        level = 20.0 * math.log10(rms) if rms > 0 else -200.0
        if level >= self.gate_db:
            self._gate_hold = int(GATE_HOLD_MS * self.sample_rate / 1000.0)
            return True
        self._gate_hold = max(0, self._gate_hold - hop.shape[0])
        return self._gate_hold > 0

    def _learn(self, features, coded: np.ndarray) -> None:
        """Feed the current hop's frames (all but the look-ahead one) into the running source statistics.

        Speech frames are those within 40 dB of the loudest level heard so far (a hop is too short
        to judge by itself).
        """
        level = coded[:-1, 0]
        self._loudest = max(self._loudest, float(level.max()))
        speech = level >= self._loudest - SPEECH_RANGE_DB * np.log(10.0) / 10.0
        voiced = features.voiced[:-1] & speech
        unvoiced = ~features.voiced[:-1] & speech
        self.running.update(np.log(features.f0[:-1][voiced]), coded[:-1][voiced], coded[:-1][unvoiced])

    def _convert_window(self) -> np.ndarray:
        first = self.context // self.frame
        features = analyze_frames(self._window, self.sample_rate, first, self.hop // self.frame + 1, f0_floor=LIVE_F0_FLOOR)
        converted = features
        if self.target.voice is not None:
            voice = self.target.voice
            coded = code_envelope(features.sp, self.sample_rate, voice.envelope_dims)
            self._learn(features, coded)
            converted = convert_to_voice(features, voice, self.target.mapping, self.running.stats())
        converted = apply_transform(converted, self.target.transform)
        return self._synth.render(converted.f0, converted.sp, converted.ap, self.hop)

    def process(self, hop: np.ndarray) -> np.ndarray:
        """One hop in (float [hop]), one hop out (float32 [hop]) rendering the input ``delay`` samples earlier."""
        x = np.asarray(hop, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.hop:
            raise ValueError(f"expected {self.hop} samples per hop, got {x.shape[0]}")
        start = time.perf_counter()
        w = self._window
        w[: -self.hop] = w[self.hop :]
        w[-self.hop :] = x
        c, h = self.context, self.hop
        if self._gate_open(x):
            out = self._convert_window()
            ref = w[c : c + h]
            rms_in = float(np.sqrt(np.mean(ref * ref)))
            rms_out = float(np.sqrt(np.mean(out * out)))
            if rms_in > 1e-5 and rms_out > 1e-5:
                ratio = min(max(rms_in / rms_out, 1e-3), 1e3)
                self._gain = ratio if self._gain_fresh else (1 - GAIN_SMOOTHING) * self._gain + GAIN_SMOOTHING * ratio
                self._gain_fresh = False
            out = out * self._gain
            gated = False
        else:
            self._synth.reset()
            out = np.zeros(h)
            gated = True
        self.timing = BlockTiming(seconds=time.perf_counter() - start, gated=gated)
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def process_all(self, audio: np.ndarray) -> np.ndarray:
        """Offline helper (tests, evaluation): run a whole signal through hop by hop and undo the delay.

        Returns float32 [T] aligned with the input (the last ``delay`` samples flushed with zeros).
        """
        x = np.asarray(audio, dtype=np.float64).reshape(-1)
        total = x.shape[0] + self.delay
        padded = np.zeros(int(math.ceil(total / self.hop)) * self.hop)
        padded[: x.shape[0]] = x
        out = np.concatenate([self.process(padded[i : i + self.hop]) for i in range(0, padded.shape[0], self.hop)])
        return out[self.delay : self.delay + x.shape[0]]
