"""What every data preparation shares: the output folder, the size budget and the report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine.datasets.manifest import MANIFEST_NAME, DatasetError, is_prepared_set, write_manifest
from studio.engine.datasets.writer import folder_bytes

AUDIO_DIR = "audio"
MIB = 1024 * 1024
DEFAULT_BUDGET_MIB = 56.0
"""Default size cap of a prepared set: fits the 64 MiB that travels to a GPU machine with room for code."""
MANIFEST_ALLOWANCE = 256 * 1024
"""Bytes of the budget kept for the manifest and licence files."""


class SourceMissingError(DatasetError):
    """The raw material (a Debian package, a Python package) is not installed; the message says how to get it."""


@dataclass
class PrepareReport:
    """What a preparation wrote: where, items and seconds per split, size, time, what the budget left out."""

    out: Path
    splits: dict[str, dict[str, float]]
    bytes: int
    wall_seconds: float
    left_out: int = 0
    left_out_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [f"prepared {self.out} in {self.wall_seconds:.1f} s: {self.bytes / MIB:.1f} MiB"]
        for split, s in self.splits.items():
            out.append(f"  {split:<10} {int(s['items']):4d} items  {s['seconds'] / 60:6.1f} min")
        if self.left_out:
            out.append(f"  left out by the size budget: {self.left_out} items, {self.left_out_seconds / 60:.1f} min")
        out.extend(f"  {n}" for n in self.notes)
        return out


def prepare_output_folder(out: str | Path) -> Path:
    """Make ``out`` ready for a fresh preparation.

    A missing or empty folder is created; a folder holding an earlier prepared set has its manifest and
    audio folder removed (they are rewritten); any other non-empty folder is refused, so nothing of the
    user's is deleted.
    """
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file; give a folder for --out")
    if root.is_dir() and any(root.iterdir()):
        if not is_prepared_set(root):
            raise DatasetError(f"{root} is not empty and holds no prepared set; give an empty or new folder")
        shutil.rmtree(root / AUDIO_DIR, ignore_errors=True)
        (root / MANIFEST_NAME).unlink(missing_ok=True)
    (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    return root


def audio_budget_bytes(budget_mib: float | None) -> int | None:
    """Bytes the audio files may take when the whole set is capped at ``budget_mib`` MiB (None: no cap);
    ``MANIFEST_ALLOWANCE`` is kept back for the manifest and licence files."""
    return None if budget_mib is None else int(budget_mib * MIB) - MANIFEST_ALLOWANCE


def write_final_manifest(root: Path, document: dict[str, Any]) -> int:
    """Write ``document`` as the set's manifest with ``document["bytes"]`` = the size of the whole
    folder, manifest included (written twice so that size counts it); returns that size in bytes."""
    write_manifest(root, document)
    document["bytes"] = folder_bytes(root)
    write_manifest(root, document)
    return document["bytes"]
