"""Where models live, and which ones there are.

Two folders are searched, user models first (a user model shadows a bundled one of the same name):

- the user models folder: ``$STUDIO_MODELS_DIR``, else ``$XDG_DATA_HOME/waveform-studio/models``,
  else ``~/.local/share/waveform-studio/models``; ``studio train --out NAME`` writes here;
- the bundled models: ``$STUDIO_BUNDLED_MODELS_DIR`` when set; else ``resources/models`` of the
  source checkout the ``studio`` package was imported from (a clone or an editable install: the
  folder holding ``pyproject.toml``); else ``<sys.prefix>/share/waveform-studio/models``, where an
  installed wheel puts them as data files.

Listing reads only each checkpoint's ``NAME.json`` (cheap; no torch tensors are touched), so a
catalogue of many models appears at once. Broken entries are skipped with a logged warning, and the
reason is kept (``scan_models().broken``) so a UI can show it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.checkpoint_documents import (
    JSON_SUFFIX,
    CheckpointError,
    CheckpointPaths,
    card_from_document,
    read_document,
)
from studio.engine.models.card import ModelCard
from studio.engine.storage import APP_DIR_NAME, user_data_dir

log = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """No model of that name or path; the message lists what there is."""


@dataclass(frozen=True)
class ModelEntry:
    """A checkpoint found on disk. path: the stem (``folder/NAME``, without suffix)."""

    name: str
    path: Path
    card: ModelCard
    bundled: bool

    @property
    def json_path(self) -> Path:
        return CheckpointPaths(self.path).json

    @property
    def weights_path(self) -> Path:
        return CheckpointPaths(self.path).weights

    @property
    def source(self) -> str:
        return "bundled" if self.bundled else "user"


@dataclass(frozen=True)
class BrokenEntry:
    """A checkpoint description that could not be used, and why."""

    path: Path
    reason: str


@dataclass
class CatalogScan:
    entries: list[ModelEntry] = field(default_factory=list)
    broken: list[BrokenEntry] = field(default_factory=list)


def user_models_dir() -> Path:
    """The user's models folder (may not exist yet): ``$STUDIO_MODELS_DIR`` or the XDG data folder."""
    return user_data_dir("models", "STUDIO_MODELS_DIR")


def bundled_models_dir() -> Path | None:
    """The folder of the models that ship with the studio, or None when there is none."""
    explicit = os.environ.get("STUDIO_BUNDLED_MODELS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    import studio

    root = Path(studio.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():  # a source checkout (clone or editable install)
        return root / "resources" / "models"
    installed = Path(sys.prefix) / "share" / APP_DIR_NAME / "models"
    return installed if installed.is_dir() else None


def _json_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(JSON_SUFFIX) and not p.name.startswith("."))


def read_entry(stem_or_file: str | os.PathLike[str], bundled: bool = False) -> ModelEntry:
    """The catalogue entry of one checkpoint (reads only its JSON; checks the weights file exists)."""
    paths = CheckpointPaths.of(stem_or_file)
    document = read_document(paths.stem)
    card = card_from_document(document, str(paths.json))
    if not paths.weights.is_file():
        raise CheckpointError(f"{paths.json}: its weights file {paths.weights.name} is missing")
    return ModelEntry(name=paths.stem.name, path=paths.stem, card=card, bundled=bundled)


def scan_models(folders: Iterable[tuple[Path, bool]] | None = None) -> CatalogScan:
    """Every checkpoint in ``folders`` (pairs of folder and whether it is the bundled one).

    Defaults to the user folder, then the bundled one. A later entry with a name already seen is
    shadowed (left out). Broken entries are logged and recorded with their reason.
    """
    if folders is None:
        folders = [(user_models_dir(), False)]
        bundled = bundled_models_dir()
        if bundled is not None:
            folders.append((bundled, True))
    scan = CatalogScan()
    seen: set[str] = set()
    for folder, is_bundled in folders:
        for json_path in _json_files(folder):
            try:
                entry = read_entry(json_path, bundled=is_bundled)
            except CheckpointError as exc:
                log.warning("skipping model %s: %s", json_path, exc)
                scan.broken.append(BrokenEntry(json_path, str(exc)))
                continue
            if entry.name in seen:
                log.debug("%s is shadowed by a model of the same name", json_path)
                continue
            seen.add(entry.name)
            scan.entries.append(entry)
    return scan


def list_models() -> list[ModelEntry]:
    """User models, then bundled ones, each sorted by name (broken ones skipped with a warning)."""
    return scan_models().entries


def find_model(name_or_path: str | os.PathLike[str]) -> ModelEntry:
    """A model by path (``NAME``, ``NAME.json``, ``NAME.safetensors``) or by its name in the catalogue.

    Raises ``ModelNotFoundError`` (listing the known names) or ``CheckpointError`` (a path that holds
    a broken checkpoint).
    """
    text = os.fspath(name_or_path)
    paths = CheckpointPaths.of(text)
    if paths.json.is_file() or paths.weights.is_file():
        return read_entry(paths.stem, bundled=_is_inside(paths.stem, bundled_models_dir()))
    if os.sep not in text and "/" not in text:
        scan = scan_models()
        for entry in scan.entries:
            if entry.name == paths.stem.name or entry.card.name == text:
                return entry
        for broken in scan.broken:
            if CheckpointPaths.of(broken.path).stem.name == text:
                raise CheckpointError(broken.reason)
        known = ", ".join(e.name for e in scan.entries) or "none"
        raise ModelNotFoundError(f"no model called '{text}' (known models: {known}; see `studio models`)")
    raise ModelNotFoundError(f"{text}: no checkpoint there (expected NAME.json and NAME.safetensors)")


def _is_inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
