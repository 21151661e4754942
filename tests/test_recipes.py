"""Recipes of the bundled models: a tiny end-to-end run on stand-in data (real preparation, real training,
real scoring and export), resume and warm start across runs, the CLI, and the pieces they rest on."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.engine.audio import files
from studio.engine.checkpoints import load_model, read_document
from studio.engine.datasets.festvox import prepare_festvox_ru
from studio.engine.datasets.manifest import read_manifest, write_manifest
from studio.engine.datasets.writer import write_flac
from studio.engine.models.base import CancelToken
from studio.engine.recipes import RECIPES, get_recipe, scoring
from studio.engine.recipes.record import END, START
from studio.engine.recipes.runner import RecipeRun, run_recipe
from studio.engine.train.data import prepared_set_splits

ROOT = Path(__file__).resolve().parent.parent
TINY_WAVERNN = {"rnn_dims": 16, "fc_dims": 16, "res_blocks": 1, "compute_dims": 8, "res_out_dims": 8, "pad": 1, "bits": 6}
TINY_WAVENET = {"layers": 4, "dilation_cycle": 4, "residual_channels": 8, "gate_channels": 16, "skip_channels": 16, "mu_bits": 6}
SENTENCES = {
    "ru_0001": "Добрый день. Сегодня хорошая погода.",
    "ru_0002": "Мы идём в парк и слушаем музыку.",
    "ru_0003": "Один, два, три, четыре, пять.",
    "ru_0829": "Проверка связи, раз, два.",
    "ru_0837": "Тихо шумит лес у реки.",
}


def _espeak(text: str, path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    subprocess.run(["espeak-ng", "-v", "ru", "-s", "190", "-w", str(path), text], check=True, capture_output=True)


@pytest.fixture(scope="module")
def speech_set(tmp_path_factory) -> Path:
    """A stand-in for festvox-ru: espeak-ng speech laid out like the Debian voice, prepared by the real
    ``prepare_festvox_ru`` (so ru_0829 is validation and ru_0837 test, as in the real set)."""
    base = tmp_path_factory.mktemp("standin")
    voice = base / "voice"
    (voice / "wav").mkdir(parents=True)
    for uid, text in SENTENCES.items():
        _espeak(text, voice / "wav" / f"{uid}.wav")
    prepare_festvox_ru(base / "festvox-ru", source=voice)
    return base / "festvox-ru"


@pytest.fixture(scope="module")
def music_set(tmp_path_factory) -> Path:
    """A stand-in for the rendered Bach: decaying harmonic notes of a C-major scale, as a prepared set."""
    root = tmp_path_factory.mktemp("music") / "music21-bach"
    (root / "audio").mkdir(parents=True)
    sr, items = 16000, []
    rng = np.random.default_rng(0)
    for i, split in enumerate(["train", "train", "validation", "test"]):
        notes = []
        for midi in rng.choice([60, 62, 64, 65, 67, 69, 71, 72], size=6):
            t = np.arange(int(0.3 * sr)) / sr
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * np.exp(-4 * t)
            notes.append(0.2 * tone)
        audio = np.concatenate(notes).astype(np.float32)
        write_flac(root / "audio" / f"piece{i}.flac", audio, sr)
        items.append({"id": f"piece{i}", "path": f"audio/piece{i}.flac", "split": split, "samples": audio.size,
                      "seconds": audio.size / sr})
    write_manifest(root, {"name": "music21-bach", "kind": "music", "sample_rate": sr, "items": items})
    return root


def tiny_run(tmp_path: Path, data: Path, **kw) -> RecipeRun:
    defaults = dict(
        data=str(data), runs_dir=tmp_path / "runs", export_dir=tmp_path / "models", steps=2, batch=2,
        segment_hops=2, eval_utterances=1, sample_seconds=0.25, install=False, record=tmp_path / "models.md",
        checkpoint_every=100,
    )
    defaults.update(kw)
    return RecipeRun(**defaults)


# -- the recipes themselves ------------------------------------------------------------------------
def test_four_recipes_cover_the_issue():
    assert set(RECIPES) == {"speech-wavernn", "speech-waveglow", "speech-wavenet", "music-wavenet"}
    for r in RECIPES.values():
        assert r.profile == "speech16k"
        assert r.cuda.amp == "bf16" and r.cuda.batch > r.cpu.batch and r.cuda.steps > r.cpu.steps
        assert r.schedule("cuda:0") is r.cuda and r.schedule("cpu") is r.cpu
    assert [r.family for r in RECIPES.values() if r.vocoder] == ["wavernn", "waveglow", "wavenet"]
    assert get_recipe("speech-wavernn").config["lpc_order"] == 16  # the LPC configuration (docs/models.md)
    assert get_recipe("music-wavenet").config["n_mels"] == 0 and not get_recipe("music-wavenet").vocoder
    with pytest.raises(ValueError, match="recipes: speech-wavernn"):
        get_recipe("nope")


def test_a_prepared_set_trains_on_train_and_holds_out_validation(speech_set):
    train, heldout = prepared_set_splits([str(speech_set)])
    assert sorted(p.stem for p in train) == ["ru_0001", "ru_0002", "ru_0003"]
    assert [p.stem for p in heldout] == ["ru_0829"]  # the test split (ru_0837) is never touched by training
    assert prepared_set_splits([str(speech_set / "audio")]) is None


# -- end to end ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_speech_recipe_end_to_end_then_resume_then_warm_start(speech_set, tmp_path):
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    first = run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN))
    assert first.started_from == "random weights" and first.train.step == 2
    bundle = tmp_path / "models" / "speech-wavernn"
    model = load_model(bundle, family="wavernn")
    card = model.card()
    assert card.config["rnn_dims"] == 16 and card.profile.name == "speech16k" and card.conditioning == "mel"
    assert card.config["spectral_projection"] == recipe.config["spectral_projection"] == 64
    assert card.provenance["recipe"] == "speech-wavernn" and card.training["steps"] == 2
    assert card.training["data"]["train_files"] == 3 and card.training["data"]["heldout_files"] == ["ru_0829.flac"]
    assert set(card.metrics["model"]) >= {"lsd", "mrstft"} and set(card.metrics["griffin_lim"]) >= {"lsd", "mrstft"}
    assert card.metrics["utterances"] == ["ru_0837"]
    assert read_document(bundle)["weights_dtype"] == "float16"
    assert not (tmp_path / "models" / "speech-wavernn.train.safetensors").exists()
    made, sr = files.load(first.sample)
    assert sr == 16000 and made.size > 0 and np.isfinite(made).all()

    second = run_recipe(recipe, tiny_run(tmp_path, speech_set))  # the run folder's state: an exact resume
    assert second.started_from.startswith("resumed") and second.train.step == 4
    assert load_model(bundle).card().training["steps"] == 4

    shutil.rmtree(tmp_path / "runs")  # only the shipped bundle is left: a warm start from it
    third = run_recipe(recipe, tiny_run(tmp_path, speech_set))
    assert third.started_from.startswith("warm start from the shipped") and third.train.step == 6
    text = (tmp_path / "models.md").read_text()
    rows = [line for line in text.split(START)[1].split(END)[0].splitlines() if "| speech-wavernn |" in line]
    assert len(rows) == 3 and "random weights" in rows[0] and "resumed" in rows[1] and "warm start" in rows[2]


def test_a_recipe_that_adds_pitch_inputs_warm_starts_the_shipped_model_with_them(speech_set, tmp_path):
    """The bundled LPC WaveRNN was trained without pitch inputs; the recipe that adds them warm-starts
    from it (the new inputs' weights at zero: it starts out making what the bundle made) instead of
    refusing or starting from random weights, and says so in its origin."""
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    without = dataclasses.replace(recipe, config={**recipe.config, "pitch_inputs": False})
    run_recipe(without, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN))
    bundle = tmp_path / "models" / "speech-wavernn"
    assert load_model(bundle).config.pitch_inputs is False
    shutil.rmtree(tmp_path / "runs")
    with_pitch = dataclasses.replace(recipe, config={**recipe.config, "pitch_inputs": True})
    result = run_recipe(with_pitch, tiny_run(tmp_path, speech_set, export_worse=True))
    assert result.started_from.startswith("warm start from the shipped") and "pitch_inputs=True" in result.started_from
    model = load_model(bundle)
    assert model.config.pitch_inputs is True and model.config.rnn_dims == 16 and model.card().training["steps"] == 4
    # a run folder without the inputs is another network: not continued silently
    shutil.rmtree(tmp_path / "runs")
    run_recipe(without, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, fresh=True))
    with pytest.raises(ValueError, match=r"pitch_inputs=False \(recipe: True\)"):
        run_recipe(with_pitch, tiny_run(tmp_path, speech_set))


def test_a_resumed_run_exports_the_generation_settings_the_recipe_has_now(speech_set, tmp_path):
    """A run state made before the recipe set its spectral projection and temperature is resumed as it
    is (they change no weight), and the bundle it exports generates as the recipe says now."""
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    before = dataclasses.replace(recipe, config={**recipe.config, "spectral_projection": None, "sampling_temperature": 1.0})
    run_recipe(before, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN))
    bundle = tmp_path / "models" / "speech-wavernn"
    assert load_model(bundle).config.spectral_projection is None
    result = run_recipe(recipe, tiny_run(tmp_path, speech_set, export_worse=True))
    assert result.started_from.startswith("resumed")
    model = load_model(bundle)
    assert model.config.spectral_projection == 64 and model.config.sampling_temperature == 0.9
    assert model.config.rnn_dims == 16 and model.card().training["steps"] == 4


@pytest.mark.slow
def test_lpc_recipe_trains_scores_and_exports_its_configuration(speech_set, tmp_path):
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")
    result = run_recipe(recipe, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN))
    assert result.started_from == "random weights" and result.train.step == 2
    model = load_model(tmp_path / "models" / "speech-wavernn", family="wavernn")
    assert model.config.lpc_order == 16 and model.config.rnn_dims == 16
    assert model.card().provenance["recipe"] == "speech-wavernn"
    assert set(result.scores["model"]) >= {"lsd", "mrstft"} and np.isfinite(result.scores["model"]["lsd"])
    made, sr = files.load(result.sample)
    assert sr == 16000 and made.size > 0 and np.isfinite(made).all()
    # the run folder holds an LPC network: a recipe for another network does not continue it silently
    plain = dataclasses.replace(recipe, config={**recipe.config, "lpc_order": 0})
    with pytest.raises(ValueError, match=r"another network.*lpc_order=16 \(recipe: 0\).*--fresh"):
        run_recipe(plain, tiny_run(tmp_path, speech_set, config=TINY_WAVERNN))


@pytest.mark.slow
def test_a_time_box_stops_its_own_run_and_leaves_the_callers_token_alone(speech_set, tmp_path):
    """`--recipe all --minutes M` shares one token over every recipe: one run's time box must not
    cancel the next recipe (it did: the box cancelled the caller's token and the loop stopped)."""
    torch.set_num_threads(1)
    caller = CancelToken()
    run = tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=100_000, minutes=0.02, export=False, record=None)
    result = run_recipe(get_recipe("speech-wavernn"), run, cancel=caller)
    assert result.time_boxed and result.train.status == "cancelled"
    assert result.train.step < 100_000
    assert not caller.cancelled


@pytest.mark.slow
def test_minutes_without_steps_fit_the_schedule_to_end_decayed_before_the_time_box(speech_set, tmp_path):
    """`--minutes M` alone: the run measures its rate and moves its last step so the cosine schedule
    ends (at lr * lr_final) within M minutes: completed, not cut by the box half-way down the schedule."""
    torch.set_num_threads(1)
    recipe = get_recipe("speech-wavernn")  # its 2000 CPU steps take longer than the box, even tiny
    run = tiny_run(tmp_path, speech_set, config=TINY_WAVERNN, steps=None, minutes=0.2, batch=8, segment_hops=4,
                   export=False, record=None)
    result = run_recipe(recipe, run)
    assert result.train.status == "completed" and not result.time_boxed
    log = [json.loads(line) for line in result.train.log_path.read_text().splitlines()]
    fits = [r for r in log if r["event"] == "fit"]
    assert fits and fits[0]["steps"] < recipe.cpu.steps  # fitted below the schedule's step count
    last_train = [r for r in log if r["event"] == "train"][-1]
    assert last_train["step"] == result.train.step < recipe.cpu.steps
    assert last_train["lr"] == pytest.approx(recipe.cpu.lr * recipe.cpu.lr_final, rel=0.05)
    assert result.train.wall_s < 0.2 * 60


def test_a_child_token_follows_its_parent_but_not_the_other_way():
    parent = CancelToken()
    child = parent.child()
    child.cancel()
    assert child.cancelled and not parent.cancelled
    other = parent.child()
    parent.cancel()
    assert other.cancelled


def test_music_recipe_end_to_end_scores_free_generation(music_set, tmp_path):
    torch.set_num_threads(1)
    result = run_recipe(get_recipe("music-wavenet"), tiny_run(tmp_path, music_set, config=TINY_WAVENET))
    model = load_model(tmp_path / "models" / "music-wavenet", family="wavenet")
    assert not model.conditioned and model.card().training["steps"] == 2
    free = model.card().metrics["free_generation"]
    assert free["seconds"] == pytest.approx(0.25, abs=0.02)
    assert 0.5 < free["flatness_white_noise"] < 0.6 and free["flatness_heldout_music"] < 0.1
    assert result.files["music-wavenet.safetensors"] < 100_000


@pytest.mark.slow
def test_cli_lists_recipes_and_refuses_unclear_requests(tmp_path):
    def studio(*args):
        return subprocess.run([sys.executable, "-m", "studio", "train", *args], capture_output=True, text=True, cwd=ROOT)

    listed = studio("--recipe", "list")
    assert listed.returncode == 0
    for name in RECIPES:
        assert name in listed.stdout
    assert "bf16" in listed.stdout
    bad = studio("--recipe", "nope")
    assert bad.returncode != 0 and "unknown recipe 'nope'" in bad.stderr
    both = studio("--recipe", "speech-wavernn", "--family", "wavenet")
    assert both.returncode != 0 and "leave out --family" in both.stderr
    nothing = studio()
    assert nothing.returncode != 0 and "--family, --data, --out" in nothing.stderr


@pytest.mark.slow
def test_cli_runs_a_recipe_on_a_given_set(speech_set, tmp_path):
    """`studio train --recipe` with the real flags, tiny: 1 step of the WaveGlow recipe, no export."""
    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", "--recipe", "speech-waveglow", "--data", str(speech_set),
         "--steps", "1", "--batch", "1", "--runs-dir", str(tmp_path / "runs"), "--no-export", "--no-setup",
         "--eval-utterances", "1", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "speech-waveglow: completed at step 1" in done.stdout
    stem = tmp_path / "runs" / "speech-waveglow" / "speech-waveglow"
    assert load_model(stem, family="waveglow").card().config["upsample_window"] == 200
    log = [json.loads(line) for line in Path(f"{stem}.log.jsonl").read_text().splitlines() if line.strip()]
    assert log[-1]["event"] == "done" and log[-1]["step"] == 1


@pytest.mark.slow
def test_rescore_writes_every_installed_metric_into_the_bundles_card_and_keeps_the_rest(speech_set, tmp_path):
    """A bundle scored on a machine without the metric packages (a GPU run: LSD and MR-STFT only) gets
    the full scores here from `studio train --recipe NAME --rescore`; weights and training record stay."""
    from studio.engine.checkpoints import save_checkpoint

    torch.set_num_threads(1)
    run_recipe(get_recipe("speech-wavenet"), tiny_run(tmp_path, speech_set, config=TINY_WAVENET, record=None))
    bundle = tmp_path / "models" / "speech-wavenet"
    model = load_model(bundle, family="wavenet")
    card = dict(model.extra_card)
    card["metrics"] = {**card["metrics"], "metrics": ["lsd"], "model": {"lsd": 9.9}, "griffin_lim": {"lsd": 0.8}}
    model.extra_card = card
    save_checkpoint(model, bundle, half=True)
    before = load_model(bundle, family="wavenet")

    done = subprocess.run(
        [sys.executable, "-m", "studio", "train", "--recipe", "speech-wavenet", "--rescore", "--data", str(speech_set),
         "--export-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), "--no-setup",
         "--eval-utterances", "1", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    after = load_model(bundle, family="wavenet")
    metrics = after.card().metrics
    assert metrics["metrics"] == scoring.available_metrics()
    assert set(scoring.available_metrics()) <= set(metrics["model"]) and metrics["model"]["lsd"] != 9.9
    assert set(scoring.available_metrics()) <= set(metrics["griffin_lim"])
    assert after.card().training == before.card().training and metrics["heldout_loss"] == before.card().metrics["heldout_loss"]
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


# -- the pieces --------------------------------------------------------------------------------------
def test_spectral_measures_tell_tones_from_noise():
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    noise = np.random.default_rng(1).standard_normal(sr) * 0.1
    assert scoring.spectral_flatness(noise) == pytest.approx(0.56, abs=0.03)
    assert scoring.spectral_flatness(tone) < 0.05
    assert scoring.band_energy_fraction(tone, sr) > 0.99
    assert scoring.band_energy_fraction(noise, sr) == pytest.approx(3950 / 8000, abs=0.05)
    assert scoring.peak_to_median_db(tone) > 60 and 5 < scoring.peak_to_median_db(noise) < 15
    assert scoring.rms_dbfs(tone) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.1)


def test_warm_start_restarts_the_schedule_but_keeps_counting(speech_set, tmp_path):
    from studio.engine.train.loop import train
    from studio.engine.train.options import TrainOptions

    torch.set_num_threads(1)
    base = dict(family="wavenet", data=[str(speech_set)], profile="speech16k", batch=1, segment=400,
                lr=1e-3, lr_schedule="cosine", warmup_steps=2, sample_seconds=0.0, checkpoint_every=100)
    first = train(TrainOptions(out=str(tmp_path / "a" / "a"), steps=2, config=TINY_WAVENET, **base))
    lrs = []
    second = train(
        TrainOptions(out=str(tmp_path / "b" / "b"), steps=5, init_from=str(first.checkpoint), **base),
        progress=lambda p: lrs.append(p.lr) if p.event == "step" else None,
    )
    assert second.step == 5 and load_model(second.checkpoint).card().training["started_from"] == str(first.checkpoint)
    assert lrs[0] == pytest.approx(0.5e-3)  # warm-up step 1 of 2 of the new schedule, not step 3
    with pytest.raises(Exception, match="--config cannot change"):
        train(TrainOptions(out=str(tmp_path / "c" / "c"), steps=3, init_from=str(first.checkpoint),
                           **{**base, "config": {"layers": 2}}))
    with pytest.raises(Exception, match="needs a CUDA device"):
        train(TrainOptions(out=str(tmp_path / "d" / "d"), steps=3, amp="bf16", config=TINY_WAVENET, **base))


def test_wavernn_low_rate_upsampling_equals_stretch_then_convolve():
    """The training-speed fix: stretch + smoothing conv computed at the low rate is the same function."""
    from studio.engine.models.wavernn_layers import Stretch2d, stretch_and_smooth

    torch.manual_seed(0)
    for scale in (2, 5, 8):
        conv = torch.nn.Conv2d(1, 1, (1, 2 * scale + 1), padding=(0, scale), bias=False)
        x = torch.randn(3, 1, 7, 9, requires_grad=True)
        reference = conv(Stretch2d(scale)(x))
        fast = stretch_and_smooth(x, scale, conv.weight)
        assert fast.shape == reference.shape == (3, 1, 7, 9 * scale)
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
        g_ref = torch.autograd.grad(reference.square().sum(), (x, conv.weight))
        g_fast = torch.autograd.grad(fast.square().sum(), (x, conv.weight))
        for a, b in zip(g_fast, g_ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_music_stand_in_manifest_reads(music_set):
    m = read_manifest(music_set)
    assert [i.split for i in m.items] == ["train", "train", "validation", "test"]
