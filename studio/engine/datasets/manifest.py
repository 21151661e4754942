"""The manifest of a prepared data set: ``manifest.json`` next to the audio files it lists.

Layout of a prepared set (what ``studio data prepare`` writes and training/evaluation read)::

    DIR/manifest.json
    DIR/audio/<id>.flac          mono, 16-bit FLAC at the manifest's sample_rate

``manifest.json``::

    {"format": "waveform-studio-dataset", "version": 1, "name": "festvox-ru", "kind": "speech",
     "sample_rate": 16000, "source": {...}, "licence": "...", "preparation": {...},
     "items": [{"id": "ru_0001", "path": "audio/ru_0001.flac", "split": "train",
                "samples": 153600, "seconds": 9.6, "text": "..."}, ...],
     "summary": {"train": {"items": 560, "seconds": 3480.2}, ...}, "bytes": 60123456}

Splits: ``train`` (what a model may learn from), ``validation`` (watched during training),
``test`` (scored by ``studio eval``; never trained on) and ``reserve`` (held out, unused). Items of the
held-out splits are fixed by the recipe, not drawn at random, so every run keeps the same ones out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "waveform-studio-dataset"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "validation", "test", "reserve")
HELD_OUT_SPLITS = ("validation", "test", "reserve")


class DatasetError(Exception):
    """A prepared data set is missing, incomplete or not ours; the message says what to do."""


@dataclass(frozen=True)
class Item:
    """One audio file of a prepared set. path: absolute. seconds: its duration."""

    id: str
    path: Path
    split: str
    samples: int
    seconds: float
    text: str = ""


@dataclass
class Manifest:
    """A prepared set as read from disk: its folder, the JSON document and its items."""

    root: Path
    document: dict[str, Any]
    items: list[Item] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.document.get("name", self.root.name))

    @property
    def sample_rate(self) -> int:
        return int(self.document["sample_rate"])

    def split(self, name: str) -> list[Item]:
        """The items of split ``name`` in manifest order; ValueError for an unknown split name."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits: {', '.join(SPLITS)}")
        return [item for item in self.items if item.split == name]

    def seconds(self, split: str | None = None) -> float:
        return float(sum(i.seconds for i in self.items if split is None or i.split == split))


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """``DIR`` or ``DIR/manifest.json`` → the manifest file's path (not checked)."""
    p = Path(path).expanduser()
    return p / MANIFEST_NAME if p.is_dir() else p


def is_prepared_set(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a prepared set's folder or its manifest file."""
    p = manifest_path(path)
    if p.name != MANIFEST_NAME or not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(path: str | os.PathLike[str], check_files: bool = True) -> Manifest:
    """Read a prepared set from its folder or manifest file.

    check_files: also check that every listed audio file exists (DatasetError naming the first missing).
    """
    p = manifest_path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: no prepared data set here (prepare one with: studio data prepare festvox-ru --out DIR)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{p}: not a readable manifest ({exc}); prepare the set again") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(f"{p}: not a Waveform Studio data set manifest (format {FORMAT!r} expected)")
    if int(doc.get("version", 0)) > VERSION:
        raise DatasetError(f"{p}: manifest version {doc.get('version')} is newer than this studio reads ({VERSION})")
    root = p.parent
    items = []
    for raw in doc.get("items", []):
        try:
            item = Item(
                id=str(raw["id"]), path=(root / raw["path"]).resolve(), split=str(raw["split"]),
                samples=int(raw["samples"]), seconds=float(raw["seconds"]), text=str(raw.get("text", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{p}: a malformed item {raw!r}: {exc}") from exc
        if item.split not in SPLITS:
            raise DatasetError(f"{p}: item {item.id} has an unknown split {item.split!r}")
        if check_files and not item.path.is_file():
            raise DatasetError(f"{p}: {item.path} is missing; prepare the set again")
        items.append(item)
    return Manifest(root=root, document=doc, items=items)


def write_manifest(root: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Write ``document`` as ``root/manifest.json`` atomically (temporary file + rename); returns the path."""
    root = Path(root)
    document = {"format": FORMAT, "version": VERSION, **document}
    target = root / MANIFEST_NAME
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def summarise(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Items and seconds per split, for the manifest's ``summary``."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        chosen = [i for i in items if i["split"] == split]
        if chosen:
            out[split] = {"items": len(chosen), "seconds": round(sum(float(i["seconds"]) for i in chosen), 2)}
    return out
