"""Content encoder: a phone classifier over speaker-normalised envelopes, whose hidden layer keys frame selection.

kNN frame selection (``frameselect``) matches a source frame to target frames by their standardised
WORLD envelopes. Those keys still carry whose vocal tract made the sound, so a cross-speaker match
often lands on a target frame of a neighbouring phone. kNN-VC (Baas et al. 2023) matches on a
self-supervised network's features instead; nothing like it can be downloaded here, so the studio
trains its own small one from what installs offline: festvox-ru's studio recordings come with
phone labels (51 phones), and an MLP learns to tell the phone of each 5 ms frame from its
standardised envelope and ±``context`` neighbours. It is trained on one speaker, made less
speaker-bound by frequency-warping the envelopes (vocal-tract lengths 0.85–1.17 of his, each warped
set standardised with its own statistics, as a new speaker's take is) and by input noise
(``content_train``). Its last hidden layer (256 ReLU units per member, unit length) is the content
key; the phone head is kept for its accuracy figures and tests.

File format (``NAME.content.json`` + ``NAME.content.safetensors``, read without unpickling):
the JSON holds the format name and version, ``context``, ``envelope_dims`` (D, coefficients 0…D−1 of
the coded envelope; the network sees 1…D−1), the phone names and the training record; the arrays
are ``w1`` [(2·context+1)·(D−1), H1], ``b1`` [H1], ``w2`` [H1, H2], ``b2`` [H2], ``w3`` [H2, P],
``b3`` [P] (float16 or float32 on disk, float32 in memory).

Input ``z`` [T, D−1]: coefficients 1… of coded envelopes standardised per voicing class with the
speaker's (or take's) own mean and spread, *without* the key lifter (``frameselect.standardise(…,
lifter=False)``). Pure numpy; thread-safe once loaded (read-only weights). Cost: ~0.5 M multiply-adds
per frame and member (the bundled encoder merges three, ``merge_encoders``: a voice's 38 000 stored
frames in ~3 s, cached per voice by ``frameselect``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from studio.engine.convert.voice import (
    PairedFormat,
    VoiceError,
    bundled_voices_dir,
    paired_paths,
    user_voices_dir,
)
from studio.engine.storage import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT_NAME = "waveform-studio-content-encoder"
FORMAT_VERSION = 1
JSON_SUFFIX = ".content.json"
ARRAYS_SUFFIX = ".content.safetensors"
BUNDLED_NAME = "ru-phones"
_LAYERS = ("w1", "b1", "w2", "b2", "w3", "b3")


class ContentEncoderError(VoiceError):
    """A content encoder file is missing, damaged or of another format."""


ENCODER_FILES = PairedFormat(FORMAT_NAME, FORMAT_VERSION, "content encoder", ContentEncoderError)


def context_rows(breaks: np.ndarray, context: int) -> np.ndarray:
    """Row indices [T, 2·context + 1] that :func:`stack_frames` gathers for each of T frames: the frame,
    then its neighbours −1, +1, −2, +2, …, never reaching across a ``breaks`` boundary (True at the
    first frame of a recording): a neighbour in another recording is replaced by the frame itself, one
    past either end by that end's frame (the rule of ``frameselect.stack_context``, and what the
    bundled encoder was trained with)."""
    n = breaks.shape[0]
    segment = np.cumsum(breaks)
    here = np.arange(n)
    columns = [here]
    for d in range(1, context + 1):
        for step in (-d, d):
            idx = np.clip(here + step, 0, max(n - 1, 0))
            columns.append(np.where(segment[idx] == segment, idx, here))
    return np.stack(columns, axis=1)


def stack_frames(z: np.ndarray, breaks: np.ndarray | None, context: int) -> np.ndarray:
    """[T, C] → [T, (2·context + 1)·C]: each frame followed by its neighbours (see :func:`context_rows`;
    ``breaks`` None: one recording)."""
    n = z.shape[0]
    if context == 0 or n == 0:
        return np.ascontiguousarray(z)
    rows = context_rows(np.zeros(n, dtype=bool) if breaks is None else breaks, context)
    return z[rows].reshape(n, -1)


@dataclass
class ContentEncoder:
    """A loaded content encoder (see module doc). ``weights``: the six arrays, float32."""

    context: int
    envelope_dims: int
    phones: list[str]
    weights: dict[str, np.ndarray]
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def key_dims(self) -> int:
        return int(self.weights["w2"].shape[1])

    @property
    def identity(self) -> str:
        """A short string naming this encoder in cache keys (its file; an unsaved one, the object itself)."""
        return str(self.path) if self.path is not None else f"unsaved-{id(self)}"

    def keys(self, z: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """Content keys [T, H2] (unit rows, float32) of standardised envelopes z [T, D−1]."""
        h = self.hidden(z, breaks)
        return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)

    def hidden(self, z: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """The last hidden layer [T, H2] (float32, ReLU) of z [T, D−1], context stacked over the whole
        sequence (``breaks`` as in :func:`stack_frames`)."""
        if z.ndim != 2 or z.shape[1] != self.envelope_dims - 1:
            raise ValueError(f"z must be [T, {self.envelope_dims - 1}], got {z.shape}")
        w = self.weights
        out = np.empty((z.shape[0], self.key_dims), dtype=np.float32)
        z32 = z.astype(np.float32, copy=False)
        step = 4096
        for i in range(0, z.shape[0], step):  # bounded temporaries for a voice's 38 000 frames
            lo, hi = max(0, i - self.context), min(z.shape[0], i + step + self.context)
            x = stack_frames(z32[lo:hi], None if breaks is None else breaks[lo:hi], self.context)[i - lo : i - lo + step]
            h = np.maximum(x @ w["w1"] + w["b1"], 0.0)
            out[i : i + step] = np.maximum(h @ w["w2"] + w["b2"], 0.0)
        return out

    def phone_posteriors(self, z: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """Phone probabilities [T, P] (rows sum to 1) of standardised envelopes z [T, D−1]."""
        logits = self.hidden(z, breaks) @ self.weights["w3"] + self.weights["b3"]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def merge_encoders(encoders: list[ContentEncoder]) -> ContentEncoder:
    """An ensemble of encoders of one input layout as one MLP of the same format: first layers side by
    side, second layers block-diagonal (so its content key is the members' keys concatenated, and its
    cosine the members' cosines weighted by their key lengths), phone logits averaged. The record is
    the first member's."""
    if not encoders:
        raise ValueError("merge_encoders needs at least one encoder")
    first = encoders[0]
    if any((e.context, e.envelope_dims, e.phones) != (first.context, first.envelope_dims, first.phones) for e in encoders):
        raise ValueError("only encoders with the same context, envelope size and phones can be merged")
    blocks = [e.weights["w2"] for e in encoders]
    w2 = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), dtype=np.float32)
    row = col = 0
    for b in blocks:
        w2[row : row + b.shape[0], col : col + b.shape[1]] = b
        row, col = row + b.shape[0], col + b.shape[1]
    weights = {
        "w1": np.concatenate([e.weights["w1"] for e in encoders], axis=1),
        "b1": np.concatenate([e.weights["b1"] for e in encoders]),
        "w2": w2,
        "b2": np.concatenate([e.weights["b2"] for e in encoders]),
        "w3": np.concatenate([e.weights["w3"] for e in encoders], axis=0) / len(encoders),
        "b3": np.mean([e.weights["b3"] for e in encoders], axis=0),
    }
    return ContentEncoder(first.context, first.envelope_dims, list(first.phones), weights, dict(first.record))


def encoder_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(json, arrays) paths for ``NAME``, ``NAME.content.json`` or ``NAME.content.safetensors``."""
    return paired_paths(path, JSON_SUFFIX, ARRAYS_SUFFIX)


def save_encoder(encoder: ContentEncoder, path: str | os.PathLike[str], dtype=np.float16) -> Path:
    """Write ``encoder`` as ``path.content.safetensors`` (weights as ``dtype``) then ``path.content.json``."""
    from safetensors.numpy import save

    json_path, arrays_path = encoder_paths(path)
    arrays = {k: np.ascontiguousarray(encoder.weights[k], dtype=dtype) for k in _LAYERS}
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "context": encoder.context,
        "envelope_dims": encoder.envelope_dims,
        "phones": list(encoder.phones),
        "record": encoder.record,
    }
    atomic_write_bytes(arrays_path, save(arrays, metadata={"format": FORMAT_NAME}))
    atomic_write_bytes(json_path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
    encoder.path = json_path
    return json_path


def load_encoder(path: str | os.PathLike[str]) -> ContentEncoder:
    """Read a content encoder (JSON + safetensors, no pickle); ContentEncoderError saying what is wrong."""
    json_path, arrays_path = encoder_paths(path)
    where = str(json_path)
    document = ENCODER_FILES.read_document(json_path)
    context, dims, phones = document.get("context"), document.get("envelope_dims"), document.get("phones")
    if (
        not isinstance(context, int) or not 0 <= context <= 64 or not isinstance(dims, int) or dims < 2
        or not isinstance(phones, list) or not phones or not all(isinstance(p, str) for p in phones)
    ):
        raise ContentEncoderError(f"{where}: 'context', 'envelope_dims' or 'phones' is missing or invalid")
    arrays = ENCODER_FILES.read_arrays(json_path, arrays_path)
    missing = [k for k in _LAYERS if k not in arrays]
    if missing:
        raise ContentEncoderError(f"{arrays_path}: arrays {missing} are missing")
    w = {k: arrays[k].astype(np.float32) for k in _LAYERS}
    d_in = (2 * context + 1) * (dims - 1)
    h1, h2 = w["w1"].shape[-1], w["w2"].shape[-1]
    expected = {"w1": (d_in, h1), "b1": (h1,), "w2": (h1, h2), "b2": (h2,), "w3": (h2, len(phones)), "b3": (len(phones),)}
    wrong = [k for k, shape in expected.items() if w[k].shape != shape]
    if wrong:
        raise ContentEncoderError(f"{arrays_path}: arrays {wrong} do not have the shapes its JSON implies")
    if not all(np.all(np.isfinite(v)) for v in w.values()):
        raise ContentEncoderError(f"{arrays_path}: the weights hold NaN or infinity")
    record = document.get("record")
    return ContentEncoder(context, dims, list(phones), w, dict(record) if isinstance(record, dict) else {}, json_path)


def bundled_encoder_path() -> Path | None:
    """``resources/voices/ru-phones`` (the stem) when its JSON is there, else None."""
    folder = bundled_voices_dir()
    if folder is None:
        return None
    stem = folder / BUNDLED_NAME
    return stem if encoder_paths(stem)[0].is_file() else None


def encoder_path() -> Path | None:
    """The content encoder conversions use: ``ru-phones`` in the user voices folder (one trained with
    ``studio voice train-content`` outside a source checkout) shadows the bundled one; None if neither."""
    user = user_voices_dir() / BUNDLED_NAME
    return user if encoder_paths(user)[0].is_file() else bundled_encoder_path()


def default_output_stem() -> Path:
    """Where ``studio voice train-content`` writes by default: over the bundled encoder in a source
    checkout (the recipe that made it), else into the user voices folder."""
    folder = bundled_voices_dir()
    return (folder if folder is not None else user_voices_dir()) / BUNDLED_NAME


@lru_cache(maxsize=1)
def default_encoder() -> ContentEncoder | None:
    """The content encoder of :func:`encoder_path`, loaded once per process; None (logged) when it is
    missing or damaged: frame selection then matches on envelope keys alone, as before it existed."""
    path = encoder_path()
    if path is None:
        log.warning("no content encoder (%s%s): frame selection uses envelope keys only", BUNDLED_NAME, JSON_SUFFIX)
        return None
    try:
        return load_encoder(path)
    except ContentEncoderError as exc:
        log.warning("content encoder not used: %s", exc)
        return None
