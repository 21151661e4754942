"""The data a recipe trains on: installed (``scripts/setup-data``) and prepared once, then reused.

A prepared set lives in ``DATA_ROOT/<dataset>`` (default ``<checkout>/data``, ``$STUDIO_DATA_DIR``
overrides); a folder that already holds a prepared set is used as it is, so a second run starts at
once and a GPU machine can be handed the folder ready-made. Runs on the caller's thread.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from studio.engine.datasets.common import SourceMissingError
from studio.engine.datasets.manifest import DatasetError, is_prepared_set
from studio.engine.recipes.spec import Recipe

log = logging.getLogger(__name__)

SETUP_WHAT = {"festvox-ru": "speech", "music": "music"}
FOLDER_NAMES = {"festvox-ru": "festvox-ru", "music": "music21-bach"}


class RecipeDataError(DatasetError):
    """The recipe's data can be neither found nor made; the message says what to run."""


def checkout_root() -> Path | None:
    """The source checkout the ``studio`` package runs from (the folder with pyproject.toml), if any."""
    import studio

    root = Path(studio.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_data_root() -> Path:
    explicit = os.environ.get("STUDIO_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "data"


def run_setup_data(what: str) -> None:
    """Run ``scripts/setup-data WHAT`` of the checkout (apt packages + Python extras, idempotent)."""
    root = checkout_root()
    script = None if root is None else root / "scripts" / "setup-data"
    if script is None or not script.is_file():
        raise RecipeDataError("scripts/setup-data is not here (not a source checkout): install the data packages by hand")
    log.info("running %s %s", script, what)
    done = subprocess.run([str(script), what], cwd=root, check=False)
    if done.returncode != 0:
        raise RecipeDataError(f"scripts/setup-data {what} failed (exit {done.returncode}); see its output above")


def prepare(recipe: Recipe, folder: Path) -> None:
    """Prepare the recipe's data set into ``folder`` (raises ``SourceMissingError`` when not installed)."""
    if recipe.dataset == "festvox-ru":
        from studio.engine.datasets.festvox import prepare_festvox_ru

        report = prepare_festvox_ru(folder, **recipe.prepare)
    else:
        from studio.engine.datasets.music import prepare_music

        report = prepare_music(folder, **recipe.prepare)
    for line in report.lines():
        log.info("%s", line)


def ensure_data(recipe: Recipe, data: str | os.PathLike[str] | None = None, install: bool = True) -> Path:
    """The prepared set the recipe trains on, made if needed.

    data: a prepared set to use as it is (its folder or manifest), or None for ``DATA_ROOT/<dataset>``,
    prepared there on first use. install: when the raw material is missing, run ``scripts/setup-data``
    and try again (else the ``SourceMissingError`` says what to install).
    """
    if data is not None:
        path = Path(data).expanduser()
        if not is_prepared_set(path):
            raise RecipeDataError(
                f"{path}: not a prepared data set (make one with `studio data prepare {recipe.dataset} --out DIR`)"
            )
        return path if path.is_dir() else path.parent
    folder = default_data_root() / FOLDER_NAMES[recipe.dataset]
    if is_prepared_set(folder):
        return folder
    try:
        prepare(recipe, folder)
    except SourceMissingError:
        if not install:
            raise
        run_setup_data(SETUP_WHAT[recipe.dataset])
        prepare(recipe, folder)
    return folder
