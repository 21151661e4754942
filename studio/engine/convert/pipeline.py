"""Offline conversion of a whole recording: audio in, converted audio out (one call, a worker thread).

``convert_audio(audio, sr, target)`` analyses with WORLD, maps to a target voice (when one is given),
applies the own-voice transform (pitch, formants, whisper), renders and matches the loudness of the
input. Own-voice transforms work at the input's rate (up to 48 kHz); conversions to a voice work at
the voice's rate (16 kHz), and the result is returned at that rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from studio.engine.audio.resample import resample
from studio.engine.convert.mapping import SpeakerMapping, convert_to_voice
from studio.engine.convert.render import Renderer, WorldRenderer
from studio.engine.convert.transforms import VoiceTransform, apply_transform
from studio.engine.convert.voice import Voice
from studio.engine.convert.world import ConversionError, WorldFeatures, analyze

MAX_WORK_RATE = 48000
MIN_WORK_RATE = 8000
PEAK_LIMIT = 0.98


class ConversionCancelled(ConversionError):
    """The caller's cancel flag was set; nothing was produced."""


@dataclass(frozen=True)
class ConversionTarget:
    """What to turn speech into: an own-voice transform, optionally after mapping to a target voice."""

    transform: VoiceTransform = field(default_factory=VoiceTransform)
    voice: Voice | None = None
    mapping: SpeakerMapping = field(default_factory=SpeakerMapping)
    source: Voice | None = None  # the source speaker's voice, when known (else measured on the input)

    def describe(self) -> str:
        parts = [f"voice {self.voice.name}"] if self.voice is not None else []
        if self.voice is not None and self.source is not None:
            parts[0] += f" from {self.source.name}"
        t = self.transform
        if t.pitch_semitones:
            parts.append(f"pitch {t.pitch_semitones:+g} st")
        if t.formant_ratio != 1.0:
            parts.append(f"formants ×{t.formant_ratio:g}")
        if t.whisper:
            parts.append("whisper")
        return ", ".join(parts) or "unchanged (resynthesis)"


@dataclass
class ConversionResult:
    """audio: float32 [T] at sample_rate. Medians are over voiced frames (NaN when none). notes: what
    the person should know about this result (e.g. a take too short to sound much like the target)."""

    audio: np.ndarray
    sample_rate: int
    source_f0_median_hz: float
    output_f0_median_hz: float
    seconds: dict[str, float]
    notes: tuple[str, ...] = ()


# Takes shorter than this convert to another speaker less convincingly: on the held-out allison
# prompts (docs/voice.md) those under 1.2 s scored 0.66 similarity to the target, the longer ones 0.76.
SHORT_TAKE_SECONDS = 1.2


def conversion_notes(seconds: float, target: ConversionTarget, voiced_frames: int | None = None) -> tuple[str, ...]:
    """Notes on converting a take of ``seconds`` with ``voiced_frames`` voiced analysis frames (None:
    not known) to ``target`` (see ``ConversionResult.notes``)."""
    notes = []
    changes_voicing = target.voice is not None or target.transform.pitch_semitones != 0
    if voiced_frames == 0 and changes_voicing:
        notes.append(
            "no voiced speech found in the take (silence, noise or whispering?): there was no pitch to "
            "shift or map, so little of the change can be heard"
        )
    if target.voice is not None and seconds < SHORT_TAKE_SECONDS:
        notes.append(
            f"a short take ({seconds:.1f} s): conversion to another speaker sounds most like them from about "
            "2 s of speech (held-out takes under 1.2 s: similarity 0.66, longer ones 0.76)"
        )
    return tuple(notes)


def median_f0(features: WorldFeatures) -> float:
    v = features.f0[features.f0 > 0]
    return float(np.median(v)) if v.size else float("nan")


def working_rate(sample_rate: int, target: ConversionTarget) -> int:
    if target.voice is not None:
        return target.voice.sample_rate
    return int(min(max(sample_rate, MIN_WORK_RATE), MAX_WORK_RATE))


def match_loudness(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale ``out`` to the RMS of ``reference`` (both [T]), then keep peaks below PEAK_LIMIT."""
    rms_out = float(np.sqrt(np.mean(np.square(out, dtype=np.float64)))) if out.size else 0.0
    rms_ref = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64)))) if reference.size else 0.0
    y = out * (rms_ref / rms_out) if rms_out > 1e-9 else out
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > PEAK_LIMIT:
        y = y * (PEAK_LIMIT / peak)
    return y.astype(np.float32)


def convert_features(features: WorldFeatures, target: ConversionTarget) -> WorldFeatures:
    """Voice mapping (if any), then the own-voice transform, on tracks at the working rate."""
    out = features
    if target.voice is not None:
        out = convert_to_voice(out, target.voice, target.mapping, target.source)
    return apply_transform(out, target.transform)


def convert_audio(
    audio: np.ndarray,
    sample_rate: int,
    target: ConversionTarget,
    renderer: Renderer | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ConversionResult:
    """Convert mono float audio [T] (or [T, C], averaged) at ``sample_rate`` Hz; see the module docstring.

    ``cancel()`` is checked between the stages (analysis, mapping, rendering). Raises
    ConversionCancelled, ValueError for empty audio, MissingDependencyError without pyworld.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"audio must be a non-empty [T] or [T, C] array, got shape {np.shape(audio)}")
    renderer = renderer or WorldRenderer()
    rate = working_rate(sample_rate, target)
    x = resample(x, sample_rate, rate) if rate != sample_rate else x
    seconds: dict[str, float] = {}

    def stage(name: str, start: float) -> None:
        seconds[name] = time.perf_counter() - start
        if cancel is not None and cancel():
            raise ConversionCancelled("conversion cancelled")

    t = time.perf_counter()
    features = analyze(x, rate)
    stage("analysis", t)
    t = time.perf_counter()
    converted = convert_features(features, target)
    stage("mapping", t)
    t = time.perf_counter()
    y = renderer.render(converted)
    seconds["rendering"] = time.perf_counter() - t
    return ConversionResult(
        audio=match_loudness(y, x),
        sample_rate=rate,
        source_f0_median_hz=median_f0(features),
        output_f0_median_hz=median_f0(converted),
        seconds=seconds,
        notes=conversion_notes(x.shape[0] / rate, target, int(np.count_nonzero(features.f0 > 0))),
    )
