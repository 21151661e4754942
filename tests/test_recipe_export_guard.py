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


def test_a_run_whose_copy_synthesis_is_worse_than_the_shipped_card_is_not_exported(speech_set, tmp_path):  # noqa: F811
    """The held-out loss can fall while copy synthesis gets worse (a CPU continuation of the H100-trained
    speech-wavernn did): a run scored worse than the shipped card on most of PESQ / STOI / MCD / DNSMOS
    over the same utterances is kept in its folder, not exported, unless asked."""
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=2))
    bundle = tmp_path / "models" / "speech-wavernn"
    card_path = bundle.with_suffix(".json")
    document = json.loads(card_path.read_text())
    metrics = document["card"]["metrics"]
    assert {"stoi", "mcd", "dnsmos"} <= set(metrics["model"]), metrics  # scored with the real metrics
    # the shipped card now claims far better copy synthesis of the same utterance than a tiny model makes
    metrics["model"].update(pesq=4.5, stoi=1.0, mcd=0.0, dnsmos=5.0)
    card_path.write_text(json.dumps(document))
    shipped = weights_digest(load_model(bundle))

    refused = run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=4))
    assert refused.exported is None and refused.note.startswith("not exported: copy synthesis worse"), refused.note
    assert "dnsmos" in refused.note and weights_digest(load_model(bundle)) == shipped
    assert (tmp_path / "runs" / "speech-wavernn" / "speech-wavernn.safetensors").exists(), "the run is kept"

    forced = run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=6, export_worse=True))
    assert forced.exported == bundle and weights_digest(load_model(bundle)) != shipped


def test_copy_synthesis_regression_needs_a_majority_on_the_same_utterances():
    """Pure logic of the comparison: MCD lower is better, the rest higher; differences within
    QUALITY_NOISE, ties and minorities pass."""
    from studio.engine.recipes.scoring import copy_synthesis_regression

    shipped = {"utterances": ["a", "b"], "model": {"pesq": 1.2, "stoi": 0.82, "mcd": 4.7, "dnsmos": 2.8}}
    worse = {"utterances": ["a", "b"], "model": {"pesq": 1.1, "stoi": 0.80, "mcd": 4.9, "dnsmos": 2.9}}
    assert copy_synthesis_regression(worse, shipped) == ["pesq 1.1 vs 1.2", "stoi 0.8 vs 0.82", "mcd 4.9 vs 4.7"]
    split = {"utterances": ["a", "b"], "model": {"pesq": 1.1, "stoi": 0.80, "mcd": 4.5, "dnsmos": 2.9}}
    assert copy_synthesis_regression(split, shipped) == []
    assert copy_synthesis_regression({**worse, "utterances": ["a"]}, shipped) == []
    assert copy_synthesis_regression(worse, {}) == [] and copy_synthesis_regression({"model": {}}, shipped) == []
    within_noise = {"utterances": ["a", "b"], "model": {"pesq": 1.19, "stoi": 0.818, "mcd": 4.74, "dnsmos": 2.78}}
    assert copy_synthesis_regression(within_noise, shipped) == []
    # the CPU continuation of the H100-trained speech-wavernn (2026-11-27) against its shipped card
    card = {"utterances": ["ru_0837", "ru_0839"], "model": {"pesq": 1.2198, "stoi": 0.8285, "mcd": 4.6768, "dnsmos": 2.7313}}
    cpu = {"utterances": ["ru_0837", "ru_0839"], "model": {"pesq": 1.1773, "stoi": 0.8114, "mcd": 4.8456, "dnsmos": 2.7119}}
    assert [w.split()[0] for w in copy_synthesis_regression(cpu, card)] == ["pesq", "stoi", "mcd"]
