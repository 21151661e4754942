"""Copy synthesis: resynthesise held-out speech from its own mel and score it against the original.

For each utterance: load it at the profile's sample rate, make its mel with the shared front end
(``features.compute_mel``), hand the same mel to every system (a neural model through its ``stream``
interface, and Griffin-Lim with 32 iterations), resample the original and each resynthesis to 16 kHz
and score them with the chosen metrics. A reference vocoder with a profile of its own (the pretrained
HiFi-GAN, ``evaluation.hifigan``) gets that profile's mel of the same recording. The original itself can be scored as a row too (PESQ 4.64,
MCD 0: a check of the metrics, and the DNSMOS of the recordings as an anchor).

Runs in the caller's thread; torch work on ``device``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.engine.audio import files
from studio.engine.audio.features import FeatureProfile, compute_mel, get_profile
from studio.engine.audio.griffinlim import DEFAULT_ITERATIONS, griffin_lim
from studio.engine.audio.resample import resample
from studio.engine.evaluation import scoring
from studio.engine.evaluation.metrics import SCORING_RATE

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
ORIGINAL = "original"
GRIFFIN_LIM = "griffin-lim"


class Vocoder(Protocol):
    """What copy synthesis needs of a system: a name, its profile, and mel → audio at the profile's rate."""

    name: str
    profile: FeatureProfile

    def synthesise(self, mel: np.ndarray) -> np.ndarray:
        """mel: float32 [n_mels, N] of ``profile`` → float32 audio [N · hop_length] in [-1, 1]."""


@dataclass
class GriffinLimVocoder:
    """The baseline: fast Griffin-Lim (``n_iter`` iterations) on the mel of ``profile``."""

    profile: FeatureProfile
    n_iter: int = DEFAULT_ITERATIONS
    device: str = "cpu"
    seed: int = 0
    name: str = GRIFFIN_LIM

    def synthesise(self, mel: np.ndarray) -> np.ndarray:
        return griffin_lim(mel, self.profile, n_iter=self.n_iter, seed=self.seed, device=self.device)


DSP_STARTS = ("noise", "source-filter")
"""What a ``DspVocoder`` starts from: white noise, or the source-filter vocoder (``audio.source_filter``)."""


@dataclass
class DspVocoder:
    """The controls for a model with a spectral projection (no network): ``start`` ("noise": white
    noise; "source-filter": pulses at the mel's pitch and noise by its voicing through the mel's
    all-pole filter), then ``projection`` passes of spectral projection (None: none). What a model's
    projected output gains over them is what its network contributes."""

    profile: FeatureProfile
    start: str
    projection: int | None = None
    seed: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        from studio.engine.audio.projection import check_iterations

        if self.start not in DSP_STARTS:
            raise ValueError(f"a DSP control starts from one of {DSP_STARTS}, got {self.start!r}")
        check_iterations(self.projection)
        self.name = self.name or (self.start if self.projection is None else f"{self.start}+projection {self.projection}")

    def synthesise(self, mel: np.ndarray) -> np.ndarray:
        from studio.engine.audio import source_filter
        from studio.engine.audio.projection import project

        if self.start == "noise":
            made = np.random.default_rng(self.seed).standard_normal(mel.shape[-1] * self.profile.hop_length) * 0.05
        else:
            made = source_filter.synthesise(mel, self.profile, seed=self.seed)
        return made.astype(np.float32) if self.projection is None else project(made, mel, self.profile, self.projection)


@dataclass
class ModelVocoder:
    """A ``WaveformModel`` run through ``stream`` (the interface the studio plays from)."""

    model: Any  # studio.engine.models.base.WaveformModel (kept untyped so this module imports no torch models)
    device: str = "cpu"
    seed: int = 0
    sigma: float | None = None
    temperature: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Request options (``GenerateRequest.options``), e.g. a ``spectral_projection`` override."""
    name: str = ""

    def __post_init__(self) -> None:
        if not self.model.conditioned:
            raise ValueError(
                f"{self.model.family} model '{self.model.name}' is not mel-conditioned: copy synthesis needs a vocoder"
            )
        self.profile = self.model.profile
        self.name = self.name or f"{self.model.family}:{self.model.name}"

    def synthesise(self, mel: np.ndarray) -> np.ndarray:
        from studio.engine.models.base import GenerateRequest

        request = GenerateRequest(mel=mel, seed=self.seed, device=self.device, options=dict(self.options))
        if self.sigma is not None:
            request.sigma = self.sigma
        if self.temperature is not None:
            request.temperature = self.temperature
        blocks = list(self.model.stream(request))
        return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)


@dataclass
class UtteranceScores:
    """One system on one utterance: metric name → value, plus synthesis time (s) and audio length (s)."""

    system: str
    utterance: str
    seconds: float
    synth_seconds: float
    scores: dict[str, float]


@dataclass
class EvalResult:
    """Everything one run produced. ``per_utterance`` in run order; ``means()`` per system."""

    systems: list[str]
    metrics: list[str]
    profile: FeatureProfile
    utterances: list[str] = field(default_factory=list)
    per_utterance: list[UtteranceScores] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def means(self) -> dict[str, dict[str, float]]:
        """Per system: the mean of each metric over utterances (NaNs left out; NaN when none scored),
        plus ``rtf``: synthesis seconds per second of audio (lower is faster)."""
        out: dict[str, dict[str, float]] = {}
        for system in self.systems:
            rows = [r for r in self.per_utterance if r.system == system]
            means = {}
            for m in self.metrics:
                values = [r.scores[m] for r in rows if m in r.scores and not math.isnan(r.scores[m])]
                means[m] = float(np.mean(values)) if values else float("nan")
            audio = sum(r.seconds for r in rows)
            means["rtf"] = float(sum(r.synth_seconds for r in rows) / audio) if audio > 0 and system != ORIGINAL else 0.0
            out[system] = means
        return out


def find_audio(data: str | os.PathLike[str], split: str = "test") -> list[tuple[str, Path]]:
    """Resolve ``--data``: a prepared set (its folder or manifest.json → the items of ``split``), a folder
    of audio files (sorted by name, not recursive), or one audio file. Returns (name, path) pairs."""
    from studio.engine.datasets.manifest import is_prepared_set, read_manifest

    p = Path(data).expanduser()
    if is_prepared_set(p):
        manifest = read_manifest(p)
        items = manifest.split(split)
        if not items:
            raise ValueError(f"{p}: the prepared set has no '{split}' items")
        return [(i.id, i.path) for i in items]
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.suffix.lower() in AUDIO_SUFFIXES and q.is_file())
        if not found:
            raise ValueError(f"{p}: no audio files ({', '.join(AUDIO_SUFFIXES)}) and no manifest.json in this folder")
        return [(q.stem, q) for q in found]
    if p.is_file():
        return [(p.stem, p)]
    raise FileNotFoundError(f"{p}: no such file or folder")


def _to_scoring_rate(x: np.ndarray, sr: int) -> np.ndarray:
    return np.clip(resample(x, sr, SCORING_RATE), -1.0, 1.0) if sr != SCORING_RATE else x


def copy_synthesis(
    utterances: Iterable[tuple[str, Path]],
    vocoders: Sequence[Vocoder],
    metric_names: Sequence[str] = scoring.DEFAULT_METRICS,
    include_original: bool = True,
    write_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str, str, dict[str, float]], None] | None = None,
) -> EvalResult:
    """Run copy synthesis of ``utterances`` through every vocoder and score each at 16 kHz.

    Each vocoder gets the mel of its own feature profile (a reference vocoder may use another one than
    the model; Griffin-Lim takes the model's), and its output is scored against the original as loaded
    at that profile's rate and trimmed to its frames; the ``original`` row uses the first profile.
    ``write_dir``: also save each resynthesis there as ``<system>/<utterance>.wav`` at its rate.
    ``progress(system, utterance, scores)`` is called after each scored pair.
    Raises ``MissingExtraError`` up front when a chosen metric's package is missing.
    """
    if not vocoders and not include_original:
        raise ValueError("nothing to evaluate: give at least one system")
    profiles: list[FeatureProfile] = []
    for v in vocoders:
        if v.profile not in profiles:
            profiles.append(v.profile)
    if not profiles:
        profiles = [get_profile("waveglow")]
    metric_names = list(metric_names)
    scoring.check_available(metric_names)
    systems = ([ORIGINAL] if include_original else []) + [v.name for v in vocoders]
    if len(set(systems)) != len(systems):
        raise ValueError(f"system names must differ, got {systems}")
    result = EvalResult(systems=systems, metrics=metric_names, profile=profiles[0])
    if len(profiles) > 1:
        result.settings["profiles"] = {v.name: v.profile.name for v in vocoders}
    for name, path in utterances:
        result.utterances.append(name)
        for index, profile in enumerate(profiles):
            sr = profile.sample_rate
            audio, _ = files.load(path, sample_rate=sr, mono=True)
            mel = compute_mel(audio, profile)
            reference = audio[: mel.shape[-1] * profile.hop_length]
            seconds = reference.size / sr
            ref16 = _to_scoring_rate(reference, sr)
            outputs: list[tuple[str, np.ndarray, float]] = []
            if include_original and index == 0:
                outputs.append((ORIGINAL, reference, 0.0))
            for vocoder in vocoders:
                if vocoder.profile != profile:
                    continue
                start = time.perf_counter()
                made = vocoder.synthesise(mel)
                outputs.append((vocoder.name, made, time.perf_counter() - start))
            for system, made, took in outputs:
                made = np.asarray(made, dtype=np.float32).reshape(-1)[: reference.size]
                if made.size < reference.size:
                    log.warning("%s made %d of %d samples for %s; padding with silence", system, made.size, reference.size, name)
                    made = np.pad(made, (0, reference.size - made.size))
                if write_dir is not None and system != ORIGINAL:
                    folder = Path(write_dir) / system.replace(":", "_").replace(os.sep, "_")
                    folder.mkdir(parents=True, exist_ok=True)
                    files.save(folder / f"{name}.wav", made, sr)
                scores = scoring.score_pair(ref16, _to_scoring_rate(made, sr), SCORING_RATE, metric_names)
                result.per_utterance.append(UtteranceScores(system, name, seconds, took, scores))
                log.info("%s %s: %s", system, name, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
                if progress is not None:
                    progress(system, name, scores)
    if not result.utterances:
        raise ValueError("no utterances to evaluate")
    return result
