"""Measuring voice conversion against the issue's bounds (``studio eval-convert``).

- :func:`pitch_shift_report`: median F0 of output vs input (bound: within 0.3 semitones of the asked
  shift), duration ratio (bound: within 1 %), STOI against the source (the timing is kept, so the
  source is time-aligned) and DNSMOS OVRL of the output.
- :func:`speaker_report`: held-out utterances of a source corpus converted to a target voice, each
  scored by the resemblyzer GE2E encoder against the target's and the source's centroids (bounds:
  ≥ 0.75 to the target, ≥ 0.15 above the source), mean ln F0 of the output vs the target voice's,
  STOI against the source and DNSMOS OVRL.

Both reports also score the unconverted input the same way (``input_dnsmos_ovrl``; for speakers
``input_similarity_own``, the input's similarity to its own speaker's centroid): the scale that the
judge gives natural speech of these very clips. Speaker reports split their means by take length
(``extra["by_length"]``: under ``SHORT_TAKE_SECONDS`` and longer): the encoder rates short natural
speech lower too (allison's held-out prompts under 1.2 s: 0.807 to her centroid, DNSMOS 2.94; 1.2 s
and longer: 0.871, 3.17).

Centroids come from the voice files (``speaker_embedding``, built from training utterances only).
Every function runs on the calling thread; metrics that need a missing package are reported as
``None`` with the reason in ``skipped``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from studio.engine.convert.pipeline import SHORT_TAKE_SECONDS, ConversionTarget, convert_audio
from studio.engine.convert.render import Renderer
from studio.engine.convert.transforms import VoiceTransform
from studio.engine.convert.voice import Voice
from studio.engine.convert.world import MissingDependencyError, analyze

log = logging.getLogger(__name__)

PITCH_TOLERANCE_ST = 0.3
DURATION_TOLERANCE = 0.01
SIMILARITY_BOUND = 0.75
MARGIN_BOUND = 0.15
DNSMOS_BOUND = 3.0
SCORING_RATE = 16000


def median_f0_hz(audio: np.ndarray, sample_rate: int) -> float:
    """Median F0 (Hz) of the voiced frames of ``audio`` (WORLD DIO + StoneMask), NaN if none."""
    f = analyze(audio, sample_rate)
    v = f.f0[f.f0 > 0]
    return float(np.median(v)) if v.size else float("nan")


def paired_median_f0_hz(source: np.ndarray, output: np.ndarray, sample_rate: int, output_rate: int) -> tuple[float, float]:
    """Median F0 (Hz) of ``source`` and of ``output`` over the frames both tracks call voiced.

    The conversions keep the timing, so frame k of both is the same moment; comparing the same frames
    keeps voicing decisions that differ between the two analyses (octave slips at voicing edges,
    breathy onsets) from moving one median and not the other.
    """
    a = analyze(source, sample_rate).f0
    b = analyze(output, output_rate).f0
    n = min(a.shape[0], b.shape[0])
    both = (a[:n] > 0) & (b[:n] > 0)
    if not both.any():
        return float("nan"), float("nan")
    return float(np.median(a[:n][both])), float(np.median(b[:n][both]))


def _optional(metric, *args) -> tuple[float | None, str | None]:
    try:
        return float(metric(*args)), None
    except (ImportError, MissingDependencyError) as exc:
        return None, str(exc).splitlines()[0]


def content_scores(source: np.ndarray, output: np.ndarray, sample_rate: int) -> dict:
    """STOI of ``output`` against the time-aligned ``source`` and DNSMOS OVRL of ``output`` (None if unavailable)."""
    from studio.engine.evaluation import metrics

    stoi, why_stoi = _optional(metrics.stoi, source, output, sample_rate)
    dnsmos, why_dnsmos = _optional(metrics.dnsmos_ovrl, output, sample_rate)
    skipped = [w for w in (why_stoi, why_dnsmos) if w]
    return {"stoi": stoi, "dnsmos_ovrl": dnsmos, "skipped": skipped}


@dataclass
class ClipScore:
    """One converted clip's numbers (None: not measured)."""

    clip: str
    seconds: float
    duration_ratio: float
    f0_in_hz: float
    f0_out_hz: float
    shift_st: float | None = None
    similarity_target: float | None = None
    similarity_source: float | None = None
    lf0_mean_out: float | None = None
    stoi: float | None = None
    dnsmos_ovrl: float | None = None
    convert_s: float = 0.0
    input_similarity_own: float | None = None  # the unconverted clip to its own speaker's centroid
    input_dnsmos_ovrl: float | None = None  # DNSMOS of the unconverted clip


@dataclass
class Report:
    """A whole evaluation: per-clip scores, means, the bounds and whether each is met."""

    kind: str
    target: str
    clips: list[ClipScore]
    means: dict[str, float | None]
    bounds: dict[str, bool | None]
    extra: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else None


def _content(source: np.ndarray, output: np.ndarray, sr: int, score: ClipScore, skipped: list[str]) -> None:
    """STOI and DNSMOS of ``output`` into ``score``, and DNSMOS of the unconverted ``source`` (both [T] at ``sr``)."""
    from studio.engine.evaluation import metrics

    c = content_scores(source, output, sr)
    score.stoi, score.dnsmos_ovrl = c["stoi"], c["dnsmos_ovrl"]
    score.input_dnsmos_ovrl, why = _optional(metrics.dnsmos_ovrl, source, sr)
    skipped.extend(s for s in [*c["skipped"], why] if s and s not in skipped)


def _group_means(scores: Sequence[ClipScore]) -> dict[str, float | int | None]:
    """The speaker report's main means over ``scores`` (with how many clips they cover)."""
    sim_t = _mean([s.similarity_target for s in scores])
    sim_s = _mean([s.similarity_source for s in scores])
    return {
        "clips": len(scores), "similarity_target": sim_t,
        "margin": None if sim_t is None or sim_s is None else sim_t - sim_s,
        "dnsmos_ovrl": _mean([s.dnsmos_ovrl for s in scores]),
        "input_similarity_own": _mean([s.input_similarity_own for s in scores]),
        "input_dnsmos_ovrl": _mean([s.input_dnsmos_ovrl for s in scores]),
    }


def means_by_length(scores: Sequence[ClipScore], split_s: float = SHORT_TAKE_SECONDS) -> dict[str, dict]:
    """:func:`_group_means` of the takes shorter than ``split_s`` seconds and of the rest (empty groups left out)."""
    groups = {f"under_{split_s:g}_s": [s for s in scores if s.seconds < split_s],
              f"{split_s:g}_s_and_longer": [s for s in scores if s.seconds >= split_s]}
    return {name: _group_means(group) for name, group in groups.items() if group}


def pitch_shift_report(
    clips: Sequence[tuple[str, np.ndarray, int]], semitones: float, content: bool = True, renderer: Renderer | None = None
) -> Report:
    """Pitch-shift every (name, audio [T], rate) clip by ``semitones`` and score it (see the module doc);
    ``renderer``: what renders the shifted tracks (None: WORLD)."""
    target = ConversionTarget(transform=VoiceTransform(pitch_semitones=semitones))
    scores, skipped = [], []
    for name, audio, sr in clips:
        start = time.perf_counter()
        result = convert_audio(audio, sr, target, renderer=renderer)
        spent = time.perf_counter() - start
        f_in, f_out = paired_median_f0_hz(audio, result.audio, sr, result.sample_rate)
        s = ClipScore(
            clip=name, seconds=audio.shape[0] / sr,
            duration_ratio=(result.audio.shape[0] / result.sample_rate) / (audio.shape[0] / sr),
            f0_in_hz=f_in, f0_out_hz=f_out, shift_st=12 * math.log2(f_out / f_in), convert_s=spent,
        )
        if content:
            _content(audio, result.audio, sr, s, skipped)
        scores.append(s)
    errors = [abs(s.shift_st - semitones) for s in scores]
    dnsmos = _mean([s.dnsmos_ovrl for s in scores])
    means = {
        "shift_st": _mean([s.shift_st for s in scores]), "max_shift_error_st": float(max(errors)),
        "max_duration_error": float(max(abs(s.duration_ratio - 1) for s in scores)),
        "stoi": _mean([s.stoi for s in scores]), "dnsmos_ovrl": dnsmos,
        "input_dnsmos_ovrl": _mean([s.input_dnsmos_ovrl for s in scores]),
    }
    bounds = {
        "pitch_within_0.3_st": means["max_shift_error_st"] <= PITCH_TOLERANCE_ST,
        "duration_within_1_percent": means["max_duration_error"] <= DURATION_TOLERANCE,
        "dnsmos_at_least_3": None if dnsmos is None else dnsmos >= DNSMOS_BOUND,
    }
    return Report("pitch", f"{semitones:+g} semitones{_rendered_by(renderer)}", scores, means, bounds, skipped=skipped)


def speaker_report(
    clips: Sequence[tuple[str, np.ndarray, int]], target: Voice, source: Voice, content: bool = True,
    use_source_stats: bool = True, renderer: Renderer | None = None,
) -> Report:
    """Convert each held-out clip of ``source``'s speaker to ``target`` and score it (see the module doc).

    Both voices need a ``speaker_embedding`` (voices built with resemblyzer installed). With
    ``use_source_stats`` the source voice's statistics drive the mapping (else each utterance's own).
    ``renderer``: what renders the converted tracks (None: WORLD).
    """
    from studio.engine.convert import speaker_similarity

    for v in (target, source):
        if "speaker_embedding" not in v.arrays:
            raise MissingDependencyError(
                f"voice {v.name!r} has no speaker embedding: rebuild it with resemblyzer installed (`studio voice build … --embedding`)"
            )
    t_centroid = target.arrays["speaker_embedding"]
    s_centroid = source.arrays["speaker_embedding"]
    conversion = ConversionTarget(voice=target, source=source if use_source_stats else None)
    scores, skipped = [], []
    for name, audio, sr in clips:
        start = time.perf_counter()
        result = convert_audio(audio, sr, conversion, renderer=renderer)
        spent = time.perf_counter() - start
        out, rate = result.audio, result.sample_rate
        e = speaker_similarity.embed(out, rate)
        f_out_track = analyze(out, rate).f0
        voiced = f_out_track[f_out_track > 0]
        s = ClipScore(
            clip=name, seconds=audio.shape[0] / sr,
            duration_ratio=(out.shape[0] / rate) / (audio.shape[0] / sr),
            f0_in_hz=median_f0_hz(audio, sr), f0_out_hz=float(np.median(voiced)) if voiced.size else float("nan"),
            similarity_target=speaker_similarity.similarity(e, t_centroid),
            similarity_source=speaker_similarity.similarity(e, s_centroid),
            lf0_mean_out=float(np.mean(np.log(voiced))) if voiced.size else None, convert_s=spent,
            input_similarity_own=speaker_similarity.similarity(speaker_similarity.embed(audio, sr), s_centroid),
        )
        if content:
            from studio.engine.audio.resample import resample

            _content(resample(audio, sr, rate) if sr != rate else audio, out, rate, s, skipped)
        scores.append(s)
    sim_t = _mean([s.similarity_target for s in scores])
    sim_s = _mean([s.similarity_source for s in scores])
    dnsmos = _mean([s.dnsmos_ovrl for s in scores])
    means = {
        "similarity_target": sim_t, "similarity_source": sim_s,
        "margin": None if sim_t is None or sim_s is None else sim_t - sim_s,
        "min_similarity_target": float(min(s.similarity_target for s in scores)),
        "lf0_mean_out": _mean([s.lf0_mean_out for s in scores]), "lf0_mean_target": float(target.lf0_mean),
        "lf0_mean_source": float(source.lf0_mean), "stoi": _mean([s.stoi for s in scores]), "dnsmos_ovrl": dnsmos,
        "input_similarity_own": _mean([s.input_similarity_own for s in scores]),
        "input_dnsmos_ovrl": _mean([s.input_dnsmos_ovrl for s in scores]),
    }
    bounds = {
        "similarity_target_at_least_0.75": sim_t >= SIMILARITY_BOUND,
        "margin_at_least_0.15": means["margin"] >= MARGIN_BOUND,
        "dnsmos_at_least_3": None if dnsmos is None else dnsmos >= DNSMOS_BOUND,
    }
    return Report(
        "speaker", f"{source.name} → {target.name}{_rendered_by(renderer)}", scores, means, bounds,
        extra={"by_length": means_by_length(scores)}, skipped=skipped,
    )


def _rendered_by(renderer: Renderer | None) -> str:
    """A title suffix naming a renderer other than WORLD."""
    return "" if renderer is None or renderer.name == "world" else f", rendered by {renderer.name}"


def load_clips(paths: Sequence[str | Path], sample_rate: int | None = None) -> list[tuple[str, np.ndarray, int]]:
    """(name, mono float32 [T], rate) per file; ``.g722`` decoded at 16 kHz; others at their own rate unless given."""
    from studio.engine.audio import files
    from studio.engine.convert.corpora import load_speech

    out = []
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".g722":
            rate = sample_rate or SCORING_RATE
            out.append((p.name, load_speech(p, rate), rate))
        else:
            audio, rate = files.load(p, sample_rate=sample_rate)
            out.append((p.name, audio.mean(axis=1) if audio.ndim == 2 else audio, rate))
    return out
