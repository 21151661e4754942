"""``studio train`` unchanged under ``torchrun`` with two CPU processes (gloo): replicas stay identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.tiny_training import TINY_WAVENET, make_speech_folder

from studio.engine.checkpoints import load_for_resume, load_model
from studio.engine.train.loop import weights_digest


@pytest.mark.slow
def test_two_process_data_parallel_training_keeps_replicas_identical(tmp_path):
    data = make_speech_folder(tmp_path / "speech")
    stem = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.exists(), "torchrun is installed with torch in the venv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "studio", "train",
        "--family", "wavenet", "--data", str(data), "--out", str(stem), "--profile", "speech16k",
        "--config", json.dumps(TINY_WAVENET), "--steps", "5", "--batch", "2", "--segment", "800",
        "--checkpoint-every", "5", "--log-every", "1", "--sample-seconds", "0", "--threads", "1",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # only rank 0 prints: one summary line
    assert out.stdout.count("completed: step 5") == 1

    records = [json.loads(line) for line in (tmp_path / "ddp.log.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    replicas = next(r for r in records if r["event"] == "replicas")
    digests, fingerprints = replicas["digests"], replicas["data_fingerprints"]
    assert len(digests) == 2 and digests[0] == digests[1], "the two replicas ended with different weights"
    assert digests[0] != start["digest"], "training did not change the weights"
    assert fingerprints[0] != fingerprints[1], "both ranks drew the same batches"
    # only rank 0 logged: one line per step
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5]

    model = load_model(stem)
    assert weights_digest(model) == digests[0]
    resumed_model, state = load_for_resume(stem)
    assert state.step == 5 and weights_digest(resumed_model) == digests[0]
    card = json.loads((tmp_path / "ddp.json").read_text())["card"]
    assert card["training"]["world_size"] == 2
