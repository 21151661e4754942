"""Checkpoint files and their JSON documents, readable without importing torch.

A checkpoint ``NAME`` is ``NAME.safetensors`` (weights), ``NAME.json`` (this document: format,
version, the model card) and, for resumable training runs, ``NAME.train.safetensors``. Reading the
document and its card needs only the standard library, so the model catalogue (``studio models``, the
window's model list) stays fast; loading weights is in :mod:`studio.engine.checkpoints`, which
re-exports everything here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.engine.models.card import ModelCard

FORMAT_NAME = "waveform-studio-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
TRAIN_SUFFIX = ".train.safetensors"
JSON_SUFFIX = ".json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar", ".bin")


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit its model; the message says which and why."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled file that holds code or objects beyond tensors and plain containers: refused."""


@dataclass(frozen=True)
class CheckpointPaths:
    """The files of checkpoint ``stem`` (a path without suffix)."""

    stem: Path

    @property
    def weights(self) -> Path:
        return self.stem.with_name(self.stem.name + WEIGHTS_SUFFIX)

    @property
    def train(self) -> Path:
        return self.stem.with_name(self.stem.name + TRAIN_SUFFIX)

    @property
    def json(self) -> Path:
        return self.stem.with_name(self.stem.name + JSON_SUFFIX)

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> CheckpointPaths:
        """Accepts ``NAME``, ``NAME.json``, ``NAME.safetensors`` or ``NAME.train.safetensors``."""
        p = Path(path).expanduser()
        name = p.name
        for suffix in (TRAIN_SUFFIX, WEIGHTS_SUFFIX, JSON_SUFFIX):
            if name.endswith(suffix) and len(name) > len(suffix):
                return cls(p.with_name(name[: -len(suffix)]))
        return cls(p)


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's JSON document (cheap: reads only ``NAME.json``), checked for format and version."""
    paths = CheckpointPaths.of(path)
    try:
        text = paths.json.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"{paths.json}: no such checkpoint description (expected NAME.json next to NAME.safetensors)"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{paths.json}: cannot read: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{paths.json}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is damaged"
        ) from exc
    return check_document(document, str(paths.json))


def check_document(document: Any, where: str) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f'{where}: not a Waveform Studio checkpoint (no \'"format": "{FORMAT_NAME}"\')')
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {version!r} is newer than this studio reads ({FORMAT_VERSION}); update the studio"
        )
    if not isinstance(document.get("card"), dict):
        raise CheckpointError(f"{where}: the checkpoint has no model card")
    return document


def card_from_document(document: dict[str, Any], where: str) -> ModelCard:
    """The ``ModelCard`` of a checked document, with a clear error for a damaged card."""
    try:
        return ModelCard.from_dict(document["card"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: damaged model card: {exc}") from exc
