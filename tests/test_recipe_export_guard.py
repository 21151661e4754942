"""A warm-started recipe run never replaces a shipped model with a worse one, and it warms up from a
small rate (a fresh Adam at the full rate wrecked the shipped speech-wavernn in two steps)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from test_recipes import TINY_WAVERNN, speech_set, tiny_run  # noqa: F401 (speech_set is a fixture)

from studio.engine.checkpoints import load_model
from studio.engine.recipes import get_recipe
from studio.engine.recipes.record import END, START
from studio.engine.recipes.runner import run_recipe
from studio.engine.train.loop import weights_digest


def _train_lrs(log_path) -> list[float]:
    return [r["lr"] for r in map(json.loads, log_path.read_text().splitlines()) if r["event"] == "train"]


def test_a_warm_start_that_ends_worse_is_not_exported_unless_asked(speech_set, tmp_path):  # noqa: F811
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=4))
    bundle = tmp_path / "models" / "speech-wavernn"
    shipped = weights_digest(load_model(bundle))

    # the real schedule: a warm start ramps up over the schedule's warm-up even in a 2-step run
    shutil.rmtree(tmp_path / "runs")
    gentle = run_recipe(recipe, tiny_run(tmp_path, speech_set, steps=2))
    assert gentle.started_from.startswith("warm start")
    lrs = _train_lrs(gentle.train.log_path)
    assert lrs[-1] == pytest.approx(2 * recipe.cpu.lr / recipe.cpu.warmup_steps)  # step 2 of the 20-step ramp

    # a destructive schedule (rate 5, no warm-up): the held-out loss rises, the bundle stays
    shipped = weights_digest(load_model(bundle))
    wild = dataclasses.replace(recipe, cpu=dataclasses.replace(recipe.cpu, lr=5.0, warmup_steps=0))
    shutil.rmtree(tmp_path / "runs")
    refused = run_recipe(wild, tiny_run(tmp_path, speech_set, steps=2))
    assert refused.train.heldout_loss > json.loads(refused.train.log_path.read_text().splitlines()[1])["heldout_loss"]
    assert refused.exported is None and refused.note.startswith("not exported")
    assert weights_digest(load_model(bundle)) == shipped, "the shipped bundle is untouched"
    assert (tmp_path / "runs" / "speech-wavernn" / "speech-wavernn.safetensors").exists(), "the run is kept"
    rows = (tmp_path / "models.md").read_text().split(START)[1].split(END)[0].splitlines()
    assert "not exported" in rows[-1]

    # asked for: exported anyway
    shutil.rmtree(tmp_path / "runs")
    forced = run_recipe(wild, tiny_run(tmp_path, speech_set, steps=2, export_worse=True))
    assert forced.exported == bundle and weights_digest(load_model(bundle)) != shipped
