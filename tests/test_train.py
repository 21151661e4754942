"""The training loop on real speech: it learns, resumes exactly, guards against NaN, survives SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.tiny_training import TINY_WAVENET, make_speech_folder, tiny_options

from studio.engine.audio.features import MelFrontEnd
from studio.engine.checkpoints import CheckpointPaths, load_model, load_training_state
from studio.engine.models.base import CancelToken
from studio.engine.train.data import (
    AudioCorpus,
    DatasetError,
    collect_audio_files,
    heldout_segments,
    split_files,
)
from studio.engine.train.loop import TrainingDiverged, TrainingError, lr_at, step_seed, train, weights_digest
from studio.engine.train.options import TrainOptions, fit_config_to_profile, parse_config


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return make_speech_folder(tmp_path_factory.mktemp("speech"))


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- pure logic -------------------------------------------------------------------------------------
def test_learning_rate_schedules():
    o = TrainOptions(family="wavenet", data=["x"], out="x", steps=100, warmup_steps=10, lr_schedule="cosine", lr_final=0.1)
    assert lr_at(o, 1.0, 5) == pytest.approx(0.5)
    assert lr_at(o, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(o, 1.0, 55) == pytest.approx(0.55)
    assert lr_at(o, 1.0, 100) == pytest.approx(0.1)
    o.lr_schedule = "exponential"
    assert lr_at(o, 1.0, 100) == pytest.approx(0.1)
    assert lr_at(o, 1.0, 55) == pytest.approx(0.1**0.5)
    o.lr_schedule = "constant"
    assert lr_at(o, 2.0, 70) == 2.0


def test_step_seeds_differ_by_rank_and_step():
    seeds = {step_seed(0, rank, step) for rank in range(4) for step in range(1, 50)}
    assert len(seeds) == 4 * 49
    assert step_seed(3, 1, 7) == step_seed(3, 1, 7)


def test_split_is_by_file_name_and_holds_out_at_least_one(tmp_path):
    files = [tmp_path / "a" / f"clip{i:03d}.wav" for i in range(40)]
    train_files, held = split_files(files, 0.1)
    moved = [tmp_path / "b" / p.name for p in files]
    train2, held2 = split_files(moved, 0.1)
    assert [p.name for p in held] == [p.name for p in held2]
    assert 1 <= len(held) < 40 and set(train_files).isdisjoint(held) and len(train_files) + len(held) == 40
    assert len(split_files(files[:2], 0.01)[1]) == 1
    train3, held3 = split_files(files, heldout_glob="clip00*")
    assert [p.name for p in held3] == [f"clip00{i}.wav" for i in range(10)] and len(train3) == 30
    with pytest.raises(DatasetError, match="matches none"):
        split_files(files, heldout_glob="nothing*")


def test_config_is_fitted_to_the_profile_unless_the_user_set_it():
    from studio.engine.audio.features import PRESETS

    prof = PRESETS["speech16k"]
    fields = {"n_mels", "upsample_scales"}
    fitted = fit_config_to_profile(fields, {"n_mels": 80}, set(), prof)
    assert fitted["n_mels"] == 80 and fitted["upsample_scales"] == [8, 5, 5]
    assert fit_config_to_profile(fields, {"n_mels": 0}, {"n_mels"}, prof)["n_mels"] == 0
    assert fit_config_to_profile(fields, {"upsample_scales": [10, 20]}, {"upsample_scales"}, prof)["upsample_scales"] == [10, 20]
    assert parse_config('{"layers": 3}') == {"layers": 3}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_config("{layers: 3}")


def test_data_files_are_found_decoded_and_cut(speech):
    files = collect_audio_files([speech])
    assert len(files) == 4
    corpus = AudioCorpus.load(files, 16000)
    assert corpus.seconds > 4 and corpus.clips[0].dtype.name == "int16"
    segments = heldout_segments(corpus, 800, 5)
    assert segments.shape == (5, 800) and segments.abs().max() > 0.05


# -- the loop -----------------------------------------------------------------------------------------
def test_training_lowers_heldout_loss_and_saves_what_it_measured(speech, tmp_path):
    options = tiny_options(
        speech, tmp_path / "voc", family="wavenet", config=dict(TINY_WAVENET), steps=30,
        checkpoint_every=15, log_every=5, lr=5e-3,
    )
    result = train(options)
    assert result.status == "completed" and result.step == 30
    # from the uniform 6-bit distribution (ln 64 = 4.16 nats) to well below it
    assert result.initial_heldout_loss == pytest.approx(4.16, abs=0.15)
    assert result.heldout_loss < result.initial_heldout_loss - 0.5
    paths = CheckpointPaths.of(result.checkpoint)
    card = json.loads(paths.json.read_text())["card"]
    assert card["training"]["steps"] == 30 and card["training"]["torch"] == torch.__version__
    assert card["training"]["data"]["train_files"] == 3 and len(card["training"]["data"]["heldout_files"]) == 1
    assert card["metrics"]["heldout_loss"] == pytest.approx(result.heldout_loss)
    records = read_log(result.log_path)
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [0, 15, 30]
    assert [r["step"] for r in records if r["event"] == "checkpoint"] == [15, 30]
    assert result.sample_path is not None and result.sample_path.stat().st_size > 1000
    # the checkpoint reproduces the measured held-out loss exactly
    model = load_model(paths.stem)
    assert model.conditioned and model.profile.name == "speech16k"
    _, held = split_files(collect_audio_files([speech]))
    segments = heldout_segments(AudioCorpus.load(held, 16000), 800, 4)
    with torch.no_grad():
        mel = MelFrontEnd(model.profile)(segments)
        losses = [model.training_loss(segments[i : i + 2], mel[i : i + 2]) for i in (0, 2)]
    assert float(sum(losses) / 2) == pytest.approx(result.heldout_loss, rel=1e-5)


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(speech, tmp_path):
    straight = train(tiny_options(speech, tmp_path / "straight", lr_schedule="cosine", steps=6))
    cancel = CancelToken()

    def stop_at_3(p):
        if p.step == 3:
            cancel.cancel()

    first = train(tiny_options(speech, tmp_path / "resumed", lr_schedule="cosine", steps=6), stop_at_3, cancel)
    assert (first.status, first.step) == ("cancelled", 3)
    state = load_training_state(first.checkpoint)
    assert state.step == 3 and state.optimizer["state"]
    with pytest.raises(TrainingError, match="already exists"):
        train(tiny_options(speech, tmp_path / "resumed", steps=6))
    second = train(tiny_options(speech, tmp_path / "resumed", lr_schedule="cosine", steps=6, resume=True))
    assert second.step == 6
    assert second.replica_digests == straight.replica_digests
    assert weights_digest(load_model(second.checkpoint)) == weights_digest(load_model(straight.checkpoint))
    records = read_log(second.log_path)
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(TrainingError, match="already at step 6"):
        train(tiny_options(speech, tmp_path / "resumed", steps=6, resume=True))


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(speech, tmp_path):
    good = train(tiny_options(speech, tmp_path / "m", steps=2, checkpoint_every=2))
    paths = CheckpointPaths.of(good.checkpoint)
    before = {p: p.read_bytes() for p in (paths.weights, paths.json, paths.train)}
    # Adam moves every weight by about lr per step: 1e30 overflows the next forward pass to Inf/NaN
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf.*last good checkpoint.*step 2"):
        train(tiny_options(speech, tmp_path / "m", steps=10, checkpoint_every=1, lr=1e30, resume=True))
    assert {p: p.read_bytes() for p in before} == before
    load_model(paths.stem)


def test_cancel_saves_the_current_step(speech, tmp_path):
    cancel = CancelToken()
    events = []

    def progress(p):
        events.append((p.event, p.step))
        if p.event == "step" and p.step == 2:
            cancel.cancel()

    result = train(tiny_options(speech, tmp_path / "c", steps=50, checkpoint_every=100), progress=progress, cancel=cancel)
    assert result.status == "cancelled" and result.step == 2
    assert load_training_state(result.checkpoint).step == 2
    assert events[0] == ("start", 0) and events[-1] == ("done", 2)


def test_unusable_data_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(TrainingError, match="no audio files"):
        train(tiny_options(tmp_path, tmp_path / "m"))
    with pytest.raises(TrainingError, match="unknown model family"):
        train(tiny_options(tmp_path, tmp_path / "m", family="wavemagic"))


def _run_until(cmd: list[str], stem: Path, event: str, step: int) -> subprocess.Popen:
    """Start ``cmd``; return once its ``NAME.log.jsonl`` records ``event`` at ``step`` or later (still running)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_path = stem.with_name(stem.name + ".log.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log_path.exists():
            lines = log_path.read_text().splitlines()
            # the last line may be half-written: parse complete lines only
            records = [json.loads(line) for line in lines[:-1]]
            if any(r["event"] == event and r["step"] >= step for r in records):
                return proc
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"training never logged {event} at step {step}: {err[-2000:]}")


@pytest.mark.slow
def test_a_killed_run_leaves_a_loadable_checkpoint_and_ctrl_c_checkpoints_and_stops(speech, tmp_path):
    stem = tmp_path / "killed"
    cmd = [
        sys.executable, "-m", "studio", "train", "--family", "wavenet", "--data", str(speech), "--out", str(stem),
        "--config", json.dumps({**TINY_WAVENET, "n_mels": 0}), "--profile", "speech16k", "--steps", "100000",
        "--batch", "2", "--segment", "400", "--checkpoint-every", "1", "--sample-seconds", "0", "--threads", "1",
    ]
    proc = _run_until(cmd, stem, "checkpoint", 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    model = load_model(stem)
    state = load_training_state(stem)
    assert state.step >= 3 and model.family == "wavenet"

    # resume it, then Ctrl+C: the run stops cleanly with a checkpoint of the step it had reached
    proc = _run_until([*cmd, "--resume", "--checkpoint-every", "100000", "--log-every", "1"], stem, "train", state.step + 1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("cancelled: step ") and "interrupted" in err
    stopped_at = int(summary.split()[2].rstrip(","))
    assert load_training_state(stem).step == stopped_at > state.step


def test_a_single_file_is_split_in_time(speech, tmp_path):
    result = train(tiny_options(speech / "utt0.wav", tmp_path / "one", steps=2, checkpoint_every=2))
    data = json.loads(CheckpointPaths.of(result.checkpoint).json.read_text())["card"]["training"]["data"]
    assert data["train_files"] == 1 and data["heldout_files"][0].startswith("utt0.wav (last ")
    assert 0 < data["heldout_seconds"] < data["train_seconds"]
