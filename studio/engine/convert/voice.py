"""Target voices: statistics of one speaker, learnt from a few minutes of recordings, saved safely.

A voice called ``NAME`` is two files side by side (written atomically, JSON last):

- ``NAME.voice.json``: format name and version, the speaker's scalar statistics (log-F0 mean and
  spread), the analysis settings, provenance (files, minutes, licence) and, when the evaluation extra
  was installed at build time, nothing else is needed to score a conversion against it;
- ``NAME.voice.safetensors``: the arrays (float32, no pickle; read with ``safetensors.numpy``):

  ``env_mean_voiced``/``env_std_voiced`` [D] and ``env_mean_unvoiced``/``env_std_unvoiced`` [D]:
  mean and standard deviation of WORLD's coded spectral envelope (D mel-cepstral coefficients) over
  the voiced and the unvoiced speech frames; ``bap_mean_voiced`` [B]: mean band aperiodicity (dB)
  of voiced frames; ``codebook`` [K, D]: K voiced envelope frames (k-means centroids) that the
  frame-selection mapping draws real target spectra from; ``codebook_keys`` [K, D]: the same
  centroids standardised with the speaker's own voiced statistics (what source frames are matched
  against); ``speaker_embedding`` [256] (optional): the centroid of the speaker's d-vectors from the
  ``resemblyzer`` GE2E encoder, used by ``studio eval-convert``.

  Format version 2 adds the speaker's real frames for kNN frame selection (``frameselect.py``), in
  time order, silence dropped: ``frames_env`` [N, D] int8 (the coded envelope quantised per
  coefficient: ``value = frames_env · frames_env_scale + frames_env_offset``, both [D] float32),
  ``frames_bap`` [N, B] float16 (band aperiodicity, dB), ``frames_voiced`` [N] uint8 (1 = voiced) and
  ``frames_break`` [N] uint8 (1 = first frame of a recording). Version-1 files (no frames) still load
  and convert with the statistics mapping.

Loading reads JSON and safetensors only: nothing in a voice file can run code.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.engine.convert.world import (
    ConversionError,
    WorldFeatures,
    analyze,
    code_aperiodicity,
    code_envelope,
)
from studio.engine.storage import APP_DIR_NAME, atomic_write_bytes, user_data_dir

log = logging.getLogger(__name__)

FORMAT_NAME = "waveform-studio-voice"
FORMAT_VERSION = 2
JSON_SUFFIX = ".voice.json"
ARRAYS_SUFFIX = ".voice.safetensors"
VOICE_SAMPLE_RATE = 16000
ENVELOPE_DIMS = 40
CODEBOOK_SIZE = 512
MAX_STORED_FRAMES = 38000  # ≈ 3.2 min of speech at 5 ms, ≈ 1.85 MB per voice file
SPEECH_RANGE_DB = 40.0  # frames within this many dB of an utterance's loudest count as speech
MIN_SPEECH_SECONDS = 20.0
_REQUIRED_ARRAYS = (
    "env_mean_voiced", "env_std_voiced", "env_mean_unvoiced", "env_std_unvoiced", "bap_mean_voiced",
    "codebook", "codebook_keys",
)
FRAME_ARRAYS = ("frames_env", "frames_env_offset", "frames_env_scale", "frames_bap", "frames_voiced", "frames_break")
_ARRAY_DTYPES = {"frames_env": np.int8, "frames_bap": np.float16, "frames_voiced": np.uint8, "frames_break": np.uint8}


class VoiceError(ConversionError):
    """A voice file that cannot be read or used, or recordings a voice cannot be built from."""


@dataclass
class Voice:
    """One speaker's statistics (see the module docstring for the arrays' meaning and shapes).

    lf0_mean / lf0_std: mean and standard deviation of ln(F0 / Hz) over voiced frames.
    """

    name: str
    sample_rate: int
    frame_period_ms: float
    lf0_mean: float
    lf0_std: float
    arrays: dict[str, np.ndarray]
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # derived arrays (frameselect)

    @property
    def has_frames(self) -> bool:
        """True when the voice stores real frames for kNN frame selection (format 2, at least one frame)."""
        return all(k in self.arrays for k in FRAME_ARRAYS) and self.arrays["frames_env"].shape[0] > 0

    @property
    def envelope_dims(self) -> int:
        return int(self.arrays["env_mean_voiced"].shape[0])

    @property
    def median_f0_hz(self) -> float:
        return float(np.exp(self.lf0_mean))

    @property
    def speaker_embedding(self) -> np.ndarray | None:
        return self.arrays.get("speaker_embedding")

    @property
    def speech_minutes(self) -> float | None:
        """Minutes of speech the voice was built from (its provenance), None when not recorded."""
        minutes = self.provenance.get("speech_minutes")
        return float(minutes) if isinstance(minutes, (int, float)) else None

    def summary(self) -> str:
        minutes = self.speech_minutes
        amount = f", {minutes:.1f} min of speech" if minutes is not None else ""
        return f"{self.name}: voice, median F0 {self.median_f0_hz:.0f} Hz{amount}" + (
            f" — {self.description}" if self.description else ""
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "kind": "voice",
            "description": self.description,
            "sample_rate": self.sample_rate,
            "frame_period_ms": self.frame_period_ms,
            "envelope_dims": self.envelope_dims,
            "lf0_mean": self.lf0_mean,
            "lf0_std": self.lf0_std,
            "median_f0_hz": round(self.median_f0_hz, 2),
            "arrays": sorted(self.arrays),
            "provenance": self.provenance,
        }


# ------------------------------------------------------------------------------------ statistics
@dataclass
class SpeakerFrames:
    """Per-frame material of one speaker pooled over utterances (what statistics are computed from).

    lf0: ln F0 of voiced frames [Nv]; env_voiced [Nv, D]; env_unvoiced [Nu, D]; bap_voiced [Nv, B];
    and every speech frame in time order: env [N, D], bap [N, B], voiced [N] bool, breaks [N] bool
    (True at the first frame of an utterance).
    """

    lf0: np.ndarray
    env_voiced: np.ndarray
    env_unvoiced: np.ndarray
    bap_voiced: np.ndarray
    seconds: float
    env: np.ndarray
    bap: np.ndarray
    voiced: np.ndarray
    breaks: np.ndarray


def speech_mask(coded: np.ndarray, range_db: float = SPEECH_RANGE_DB) -> np.ndarray:
    """Frames [T] whose level (coded coefficient 0, a natural-log power) is within ``range_db`` of the loudest."""
    level = coded[:, 0]
    return level >= level.max() - range_db * np.log(10.0) / 10.0


def frames_of(features: WorldFeatures, dims: int = ENVELOPE_DIMS) -> SpeakerFrames:
    """Split one utterance's tracks into voiced/unvoiced speech frames (silence dropped)."""
    coded = code_envelope(features.sp, features.sample_rate, dims)
    speech = speech_mask(coded)
    voiced = features.voiced & speech
    unvoiced = ~features.voiced & speech
    bap = code_aperiodicity(features.ap, features.sample_rate)
    breaks = np.zeros(int(speech.sum()), dtype=bool)
    breaks[:1] = True
    return SpeakerFrames(
        lf0=np.log(features.f0[voiced]),
        env_voiced=coded[voiced],
        env_unvoiced=coded[unvoiced],
        bap_voiced=bap[voiced],
        seconds=float(speech.sum()) * features.frame_period_ms / 1000.0,
        env=coded[speech],
        bap=bap[speech],
        voiced=features.voiced[speech],
        breaks=breaks,
    )


def pool(frames: Sequence[SpeakerFrames]) -> SpeakerFrames:
    return SpeakerFrames(
        lf0=np.concatenate([f.lf0 for f in frames]),
        env_voiced=np.concatenate([f.env_voiced for f in frames]),
        env_unvoiced=np.concatenate([f.env_unvoiced for f in frames]),
        bap_voiced=np.concatenate([f.bap_voiced for f in frames]),
        seconds=float(sum(f.seconds for f in frames)),
        env=np.concatenate([f.env for f in frames]),
        bap=np.concatenate([f.bap for f in frames]),
        voiced=np.concatenate([f.voiced for f in frames]),
        breaks=np.concatenate([f.breaks for f in frames]),
    )


def quantise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, D] float → (int8 codes [N, D], offset [D], scale [D]) with values ≈ codes · scale + offset."""
    lo, hi = values.min(axis=0), values.max(axis=0)
    scale = np.maximum((hi - lo) / 254.0, 1e-6)
    offset = (hi + lo) / 2.0
    codes = np.clip(np.rint((values - offset) / scale), -127, 127).astype(np.int8)
    return codes, offset.astype(np.float32), scale.astype(np.float32)


def stored_frames(frames: SpeakerFrames, limit: int = MAX_STORED_FRAMES) -> dict[str, np.ndarray]:
    """The frame-selection arrays of a voice (see the module docstring): at most ``limit`` frames, taken
    as evenly spaced runs of whole stretches so that neighbouring frames stay neighbours."""
    n = frames.env.shape[0]
    keep = np.ones(n, dtype=bool)
    breaks = frames.breaks.copy()
    if n > limit:
        run = 400  # 2 s runs
        starts = np.arange(0, n, run)
        chosen = starts[np.round(np.linspace(0, len(starts) - 1, max(1, limit // run))).astype(int)]
        keep[:] = False
        for s in np.unique(chosen):
            keep[s : s + run] = True
            breaks[s] = True
        keep[np.flatnonzero(keep)[limit:]] = False
    codes, offset, scale = quantise(frames.env[keep])
    return {
        "frames_env": codes,
        "frames_env_offset": offset,
        "frames_env_scale": scale,
        "frames_bap": frames.bap[keep].astype(np.float16),
        "frames_voiced": frames.voiced[keep].astype(np.uint8),
        "frames_break": breaks[keep].astype(np.uint8),
    }


def stored_envelopes(voice: Voice) -> np.ndarray:
    """The voice's stored frames' coded envelopes, float64 [N, D] (dequantised)."""
    a = voice.arrays
    return a["frames_env"].astype(np.float64) * a["frames_env_scale"].astype(np.float64) + a["frames_env_offset"].astype(np.float64)


def _std(x: np.ndarray) -> np.ndarray:
    return np.maximum(x.std(axis=0), 1e-3)


def kmeans(data: np.ndarray, k: int, iterations: int = 12, seed: int = 0) -> np.ndarray:
    """Plain Lloyd k-means with k-means++ seeding on a sample; [N, D] → centroids [min(k, N), D]."""
    rng = np.random.default_rng(seed)
    x = np.asarray(data, dtype=np.float64)
    k = min(k, x.shape[0])
    sample = x[rng.choice(x.shape[0], size=min(x.shape[0], 20 * k), replace=False)]
    centroids = [sample[rng.integers(sample.shape[0])]]
    d2 = ((sample - centroids[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        centroids.append(sample[rng.choice(sample.shape[0], p=d2 / d2.sum())] if d2.sum() > 0 else sample[rng.integers(sample.shape[0])])
        d2 = np.minimum(d2, ((sample - centroids[-1]) ** 2).sum(axis=1))
    c = np.stack(centroids)
    for _ in range(iterations):
        assign = nearest(x, c)
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=c.shape[0])[:, None]
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
    return c


def nearest(x: np.ndarray, centroids: np.ndarray, k: int = 1) -> np.ndarray:
    """Indices of the nearest centroid(s) (Euclidean) of each row of x: [N] for k = 1, else [N, k]."""
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
    if k == 1:
        return np.argmin(d, axis=1)
    return np.argpartition(d, kth=min(k, d.shape[1] - 1) - 1, axis=1)[:, :k]


def voice_from_frames(
    name: str, frames: SpeakerFrames, *, sample_rate: int, frame_period_ms: float, codebook_size: int = CODEBOOK_SIZE,
    description: str = "", provenance: dict[str, Any] | None = None, frames_limit: int = MAX_STORED_FRAMES,
) -> Voice:
    """Statistics, codebook and (``frames_limit`` > 0) up to that many real frames of a pooled speaker
    (VoiceError when there is too little speech)."""
    if frames.lf0.shape[0] < 200 or frames.env_unvoiced.shape[0] < 50:
        raise VoiceError(
            f"too little voiced speech to build voice {name!r} ({frames.seconds:.1f} s of speech found): "
            f"give at least {MIN_SPEECH_SECONDS:.0f} s, ideally a few minutes, of one speaker talking"
        )
    mean_v, std_v = frames.env_voiced.mean(axis=0), _std(frames.env_voiced)
    codebook = kmeans(frames.env_voiced, codebook_size)
    arrays = {
        "env_mean_voiced": mean_v,
        "env_std_voiced": std_v,
        "env_mean_unvoiced": frames.env_unvoiced.mean(axis=0),
        "env_std_unvoiced": _std(frames.env_unvoiced),
        "bap_mean_voiced": frames.bap_voiced.mean(axis=0),
        "codebook": codebook,
        "codebook_keys": (codebook - mean_v) / std_v,
    }
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    if frames_limit > 0:
        arrays.update(stored_frames(frames, frames_limit))
    prov = dict(provenance or {})
    prov["speech_minutes"] = round(frames.seconds / 60.0, 2)
    prov["voiced_frames"] = int(frames.lf0.shape[0])
    if "frames_env" in arrays:
        prov["stored_frames"] = int(arrays["frames_env"].shape[0])
    return Voice(
        name=name,
        sample_rate=int(sample_rate),
        frame_period_ms=float(frame_period_ms),
        lf0_mean=float(frames.lf0.mean()),
        lf0_std=float(max(frames.lf0.std(), 1e-3)),
        arrays=arrays,
        description=description,
        provenance=prov,
    )


ProgressCallback = Callable[[int, int], None]


def build_voice(
    name: str,
    files: Sequence[str | os.PathLike[str]],
    *,
    description: str = "",
    provenance: dict[str, Any] | None = None,
    max_minutes: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Voice:
    """Build a voice from recordings of one speaker (any format ``files.load`` reads, any rate).

    Each file (anything ``files.load`` reads, or raw ``.g722``) is read as mono, resampled to 16 kHz and analysed with WORLD; silence is dropped.
    ``max_minutes`` stops reading files once that much audio was analysed. ``progress(done, total)``
    is called after each file; ``cancel()`` returning True stops early with VoiceError. Raises
    VoiceError (no usable speech) or ``AudioFileError`` (a file that cannot be read).
    """
    from studio.engine.convert.corpora import load_speech

    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise VoiceError(f"voice name {name!r} is not usable as a file name; use letters, digits, '-' or '_'")
    if not files:
        raise VoiceError("no recordings given: pass the audio files of one speaker (a few minutes in all)")
    pooled: list[SpeakerFrames] = []
    seconds = 0.0
    used = 0
    for i, path in enumerate(files):
        if cancel is not None and cancel():
            raise VoiceError("building the voice was cancelled")
        audio = load_speech(path, VOICE_SAMPLE_RATE)
        if audio.shape[0] < VOICE_SAMPLE_RATE // 4:
            log.warning("%s: shorter than 0.25 s, skipped", path)
            continue
        pooled.append(frames_of(analyze(audio, VOICE_SAMPLE_RATE)))
        seconds += audio.shape[0] / VOICE_SAMPLE_RATE
        used += 1
        if progress is not None:
            progress(i + 1, len(files))
        if max_minutes is not None and seconds >= 60.0 * max_minutes:
            break
    if not pooled:
        raise VoiceError("none of the recordings holds usable audio (all shorter than 0.25 s)")
    prov = dict(provenance or {})
    prov.setdefault("files", used)
    prov["audio_minutes"] = round(seconds / 60.0, 2)
    voice = voice_from_frames(
        name, pool(pooled), sample_rate=VOICE_SAMPLE_RATE, frame_period_ms=5.0, description=description, provenance=prov
    )
    return voice


# ------------------------------------------------------------------------------------- file I/O
def paired_paths(path: str | os.PathLike[str], json_suffix: str, arrays_suffix: str) -> tuple[Path, Path]:
    """(json, arrays) paths of a JSON + safetensors pair named by its stem or either file."""
    p = Path(path).expanduser()
    for suffix in (json_suffix, arrays_suffix):
        if p.name.endswith(suffix):
            p = p.with_name(p.name[: -len(suffix)])
            break
    return p.with_name(p.name + json_suffix), p.with_name(p.name + arrays_suffix)


@dataclass(frozen=True)
class PairedFormat:
    """How to read one kind of JSON + safetensors pair and word its errors: ``kind`` names it in
    messages ("voice"), ``error`` is raised, and each hint (``"; build it again"`` or ``""``) ends the
    message of its fault."""

    name: str
    version: int
    kind: str
    error: type[Exception]
    missing_hint: str = ""
    unreadable_hint: str = ""
    newer_hint: str = ""
    arrays_missing_hint: str = ""
    arrays_damaged_hint: str = ""

    def read_document(self, json_path: Path) -> dict[str, Any]:
        """The JSON document, checked for this format's name and a version it can read."""
        where = str(json_path)
        try:
            document = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self.error(f"{where}: no such {self.kind}{self.missing_hint}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.error(f"{where}: cannot be read as a {self.kind} ({exc}){self.unreadable_hint}") from exc
        if not isinstance(document, dict) or document.get("format") != self.name:
            raise self.error(f"{where}: not a Waveform Studio {self.kind} (no '\"format\": \"{self.name}\"')")
        version = document.get("format_version")
        if not isinstance(version, int) or version > self.version:
            raise self.error(
                f"{where}: {self.kind} format version {version!r} is newer than this studio reads{self.newer_hint}"
            )
        return document

    def read_arrays(self, json_path: Path, arrays_path: Path) -> dict[str, np.ndarray]:
        """The safetensors arrays (numpy; nothing is unpickled)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(arrays_path))
        except FileNotFoundError:
            raise self.error(
                f"{json_path}: its arrays file {arrays_path.name} is missing{self.arrays_missing_hint}"
            ) from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise self.error(f"{arrays_path}: damaged {self.kind} arrays ({exc}){self.arrays_damaged_hint}") from exc


VOICE_FILES = PairedFormat(
    FORMAT_NAME, FORMAT_VERSION, "voice", VoiceError,
    missing_hint=" (expected NAME.voice.json next to NAME.voice.safetensors)",
    unreadable_hint="; build it again with `studio voice build`",
    newer_hint="; update the studio",
    arrays_missing_hint="; copy both files of the voice",
    arrays_damaged_hint="; build the voice again",
)


def voice_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(json, arrays) paths for ``NAME``, ``NAME.voice.json`` or ``NAME.voice.safetensors``."""
    return paired_paths(path, JSON_SUFFIX, ARRAYS_SUFFIX)


def is_voice_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names an existing voice (either of its files or their common stem)."""
    json_path, arrays_path = voice_paths(path)
    return json_path.is_file() and arrays_path.is_file()


def save_voice(voice: Voice, path: str | os.PathLike[str]) -> Path:
    """Write ``voice`` as ``path.voice.safetensors`` then ``path.voice.json``; returns the JSON path."""
    from safetensors.numpy import save

    json_path, arrays_path = voice_paths(path)
    document = voice.to_document()
    arrays = {k: np.ascontiguousarray(v, dtype=_ARRAY_DTYPES.get(k, np.float32)) for k, v in voice.arrays.items()}
    atomic_write_bytes(arrays_path, save(arrays, metadata={"format": FORMAT_NAME}))
    atomic_write_bytes(json_path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    voice.path = json_path
    return json_path


def _number(document: dict[str, Any], key: str, where: str) -> float:
    value = document.get(key)
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        raise VoiceError(f"{where}: field {key!r} is missing or not a number; the voice file is damaged")
    return float(value)


def load_voice(path: str | os.PathLike[str]) -> Voice:
    """Read a voice (JSON + safetensors, no pickle); VoiceError saying what is wrong otherwise."""
    json_path, arrays_path = voice_paths(path)
    where = str(json_path)
    document = VOICE_FILES.read_document(json_path)
    arrays = VOICE_FILES.read_arrays(json_path, arrays_path)
    missing = [k for k in _REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise VoiceError(f"{arrays_path}: arrays {missing} are missing; build the voice again")
    dims = arrays["env_mean_voiced"].shape
    if len(dims) != 1 or any(arrays[k].shape[-1] != dims[0] for k in _REQUIRED_ARRAYS if k.startswith(("env", "code"))):
        raise VoiceError(f"{arrays_path}: array shapes do not agree; build the voice again")
    present = [k for k in FRAME_ARRAYS if k in arrays]
    if present:
        if len(present) != len(FRAME_ARRAYS):
            raise VoiceError(f"{arrays_path}: frame arrays {sorted(set(FRAME_ARRAYS) - set(present))} are missing; build the voice again")
        n = arrays["frames_env"].shape[0]
        if (
            arrays["frames_env"].ndim != 2 or arrays["frames_env"].shape[1] != dims[0] or n == 0
            or any(arrays[k].shape != (dims[0],) for k in ("frames_env_offset", "frames_env_scale"))
            or arrays["frames_bap"].shape[0] != n or arrays["frames_voiced"].shape != (n,) or arrays["frames_break"].shape != (n,)
            or any(arrays[k].dtype != dtype for k, dtype in _ARRAY_DTYPES.items())
        ):
            raise VoiceError(f"{arrays_path}: frame array shapes or types do not agree; build the voice again")
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise VoiceError(f"{arrays_path}: array {key!r} holds NaN or infinity; build the voice again")
    name = document.get("name")
    return Voice(
        name=name if isinstance(name, str) and name else json_path.name[: -len(JSON_SUFFIX)],
        sample_rate=int(_number(document, "sample_rate", where)),
        frame_period_ms=_number(document, "frame_period_ms", where),
        lf0_mean=_number(document, "lf0_mean", where),
        lf0_std=_number(document, "lf0_std", where),
        arrays=dict(arrays),
        description=str(document.get("description", "")),
        provenance=dict(document.get("provenance") or {}),
        path=json_path,
    )


# ------------------------------------------------------------------------------------- catalogue
def user_voices_dir() -> Path:
    """``$STUDIO_VOICES_DIR``, else ``$XDG_DATA_HOME/waveform-studio/voices`` (``~/.local/share/…``)."""
    return user_data_dir("voices", "STUDIO_VOICES_DIR")


def bundled_voices_dir() -> Path | None:
    """``resources/voices`` of the source checkout, or ``<prefix>/share/waveform-studio/voices``."""
    import sys

    import studio

    for candidate in (
        Path(studio.__file__).resolve().parent.parent / "resources" / "voices",
        Path(sys.prefix) / "share" / APP_DIR_NAME / "voices",
    ):
        if candidate.is_dir():
            return candidate
    return None


def is_bundled(voice: Voice) -> bool:
    """True when ``voice`` was read from the bundled voices folder (False: a user voice, or unsaved)."""
    folder = bundled_voices_dir()
    return folder is not None and voice.path is not None and folder.resolve() in Path(voice.path).resolve().parents


def list_voices() -> list[Voice]:
    """User voices, then bundled ones (a user voice shadows a bundled one of the same name); broken
    files are skipped with a logged warning."""
    found: dict[str, Voice] = {}
    for folder in (user_voices_dir(), bundled_voices_dir()):
        if folder is None or not folder.is_dir():
            continue
        for json_path in sorted(folder.glob("*" + JSON_SUFFIX)):
            try:
                v = load_voice(json_path)
            except VoiceError as exc:
                log.warning("skipping voice %s: %s", json_path, exc)
                continue
            found.setdefault(v.name, v)
    return list(found.values())


def find_voice(name_or_path: str | os.PathLike[str]) -> Voice:
    """A voice by path (either file or the stem) or by name; VoiceError listing the known voices."""
    text = os.fspath(name_or_path)
    if is_voice_path(text):
        return load_voice(text)
    if "/" not in text and os.sep not in text:
        for v in list_voices():
            if v.name == text:
                return v
    known = ", ".join(v.name for v in list_voices()) or "none"
    raise VoiceError(f"no voice called {text!r} (known voices: {known}); build one with `studio voice build NAME FILES…`")
