"""Safe checkpoints: round trips with real model families, damaged files, and pickles that carry code."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
from safetensors import safe_open

from studio.engine.audio.features import PRESETS
from studio.engine.checkpoints import (
    CheckpointError,
    CheckpointPaths,
    TrainingState,
    UnsafeCheckpointError,
    load_model,
    load_training_state,
    read_document,
    read_pickled_tensors,
    save_checkpoint,
)
from studio.engine.models.base import GenerateRequest, build_model

TINY = {
    "wavenet": ({"layers": 3, "dilation_cycle": 3, "residual_channels": 4, "gate_channels": 8,
                 "skip_channels": 8, "cond_channels": 4, "mu_bits": 5, "upsample_scales": [8, 5, 5]}, "speech16k"),
    "wavernn": ({"rnn_dims": 8, "fc_dims": 8, "res_blocks": 1, "compute_dims": 4, "res_out_dims": 4, "bits": 5,
                 "upsample_scales": [5, 5, 11]}, "wavernn"),
    "waveglow": ({"n_flows": 2, "n_early_every": 4, "wn_layers": 2, "wn_channels": 4}, "waveglow"),
}


def tiny_model(family: str, **overrides):
    config, profile = TINY[family]
    torch.manual_seed(1)
    return build_model(family, {**config, **overrides}, PRESETS[profile])


def batch_for(model, frames: int = 4):
    hop = model.profile.hop_length
    g = torch.Generator().manual_seed(3)
    audio = (torch.rand(2, frames * hop, generator=g) - 0.5) * 0.5
    mel = torch.randn(2, model.profile.n_mels, frames, generator=g) if model.conditioned else None
    return audio, mel


@pytest.mark.parametrize("family", sorted(TINY))
def test_save_load_gives_the_same_model(tmp_path, family):
    model = tiny_model(family)
    model.name = "tiny"
    model.extra_card["metrics"] = {"heldout_loss": 1.5}
    paths = save_checkpoint(model, tmp_path / "tiny")
    assert paths.weights.exists() and paths.json.exists() and not paths.train.exists()
    for spelling in ("tiny", "tiny.json", "tiny.safetensors"):
        loaded = load_model(tmp_path / spelling)
        assert loaded.family == family and loaded.name == "tiny"
        assert loaded.card().metrics == {"heldout_loss": 1.5}
        assert loaded.card().config == model.card().config
    audio, mel = batch_for(model)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.training_loss(audio, mel), loaded.training_loss(audio, mel))
    request = GenerateRequest(num_samples=3 * model.profile.hop_length, seed=5)
    if model.conditioned:
        request.mel = mel[0, :, :3].numpy()
    assert (model.generate(request) == loaded.generate(request)).all()


def test_half_precision_bundle_loads_back_as_float32(tmp_path):
    model = tiny_model("wavenet")
    paths = save_checkpoint(model, tmp_path / "half", half=True)
    with safe_open(str(paths.weights), framework="pt") as f:
        stored = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert torch.float16 in stored and torch.float32 not in stored
    assert read_document(paths.stem)["weights_dtype"] == "float16"
    loaded = load_model(paths.stem)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, name
        if a.is_floating_point():
            torch.testing.assert_close(b, a, atol=1e-2, rtol=1e-3)


def test_training_state_round_trip_restores_adam(tmp_path):
    model = tiny_model("wavenet")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    audio, mel = batch_for(model)
    for _ in range(2):
        opt.zero_grad()
        model.training_loss(audio, mel).backward()
        opt.step()
    rng = torch.get_rng_state()
    state = TrainingState(step=2, epoch=1, optimizer=opt.state_dict(), rng={"torch_cpu": rng}, extra={"seed": 9})
    save_checkpoint(model, tmp_path / "run", state)
    got = load_training_state(tmp_path / "run.json")
    assert (got.step, got.epoch, got.extra) == (2, 1, {"seed": 9})
    assert torch.equal(got.rng["torch_cpu"], rng)
    fresh = load_model(tmp_path / "run")
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1.0)
    opt2.load_state_dict(got.optimizer)
    assert opt2.param_groups[0]["lr"] == 2e-3
    for key, value in opt.state_dict()["state"].items():
        for name, tensor in value.items():
            assert torch.equal(opt2.state_dict()["state"][key][name], tensor), (key, name)
    # a later save without training state must not leave a stale optimizer behind
    save_checkpoint(model, tmp_path / "run")
    assert not CheckpointPaths.of(tmp_path / "run").train.exists()
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(tmp_path / "run")


def test_truncated_weights_are_a_clear_error(tmp_path):
    paths = save_checkpoint(tiny_model("waveglow"), tmp_path / "cut")
    data = paths.weights.read_bytes()
    for size in (len(data) // 2, 5, 0):
        paths.weights.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="damaged or truncated"):
            load_model(paths.stem)


def test_garbage_files_are_a_clear_error(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(300))
    (tmp_path / "junk.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_model(tmp_path / "junk")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_document(tmp_path / "junk")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a Waveform Studio checkpoint"):
        read_document(tmp_path / "other")
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_model(tmp_path / "absent")


def _rewrite_card(paths: CheckpointPaths, change) -> None:
    """Edit the card in both copies (JSON sidecar and the weights' header), keeping the tensors."""
    from safetensors.torch import load_file, save_file

    document = json.loads(paths.json.read_text())
    change(document["card"])
    paths.json.write_text(json.dumps(document))
    save_file(load_file(paths.weights), paths.weights, metadata={"waveform_studio": json.dumps(document)})


def test_weights_that_do_not_fit_the_card_name_the_tensor_and_shapes(tmp_path):
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "m")
    _rewrite_card(paths, lambda card: card["config"].update(residual_channels=6))
    with pytest.raises(CheckpointError) as err:
        load_model(paths.stem)
    message = str(err.value)
    assert "embed.weight" in message and "(32, 4)" in message and "(32, 6)" in message


def test_wrong_and_unknown_family_are_refused(tmp_path):
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "m")
    with pytest.raises(CheckpointError, match="this is a wavenet checkpoint, not waveglow"):
        load_model(paths.stem, family="waveglow")
    _rewrite_card(paths, lambda card: card.update(family="wavemagic"))
    with pytest.raises(CheckpointError, match="unknown model family 'wavemagic'"):
        load_model(paths.stem)


def test_a_sidecar_json_of_another_family_is_refused(tmp_path):
    """`studio models` lists the JSON's card: loading must not quietly build a different family."""
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "m")
    document = json.loads(paths.json.read_text())
    document["card"]["family"] = "waveglow"
    paths.json.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="says family 'waveglow' but m.safetensors holds a 'wavenet' model"):
        load_model(paths.stem)


def test_config_fields_from_another_family_are_refused(tmp_path):
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "m")
    _rewrite_card(paths, lambda card: card.update(family="waveglow"))
    with pytest.raises(CheckpointError, match="waveglow config in this checkpoint is not valid"):
        load_model(paths.stem)


def test_newer_format_is_refused_with_advice(tmp_path):
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "m")
    document = json.loads(paths.json.read_text())
    document["format_version"] = 99
    paths.json.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="newer than this studio reads"):
        read_document(paths.stem)


def test_an_interrupted_save_still_loads_the_newer_weights(tmp_path, caplog):
    """Weights replaced, JSON not yet: the weights file's own copy of the card wins."""
    stem = tmp_path / "m"
    save_checkpoint(tiny_model("wavenet"), stem)
    old_json = CheckpointPaths.of(stem).json.read_text()
    newer = tiny_model("wavenet", residual_channels=6)
    save_checkpoint(newer, stem)
    CheckpointPaths.of(stem).json.write_text(old_json)
    with caplog.at_level(logging.WARNING):
        loaded = load_model(stem)
    assert loaded.config.residual_channels == 6
    assert "interrupted save" in caplog.text


def test_saving_leaves_no_temporary_files_and_readable_modes(tmp_path):
    save_checkpoint(tiny_model("wavenet"), tmp_path / "m", TrainingState(step=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "m.train.safetensors"]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in tmp_path.iterdir())


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(3), "surprise": _RunsCode(str(marker))}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f)
    # the payload really does run code when unpickled the unsafe way (so the test can fail)
    with pytest.raises(UnsafeCheckpointError, match="refused: this file contains code/objects, not only tensors"):
        read_pickled_tensors(evil)
    assert not marker.exists()
    # with a card next to it, loading a model from it is refused the same way
    paths = save_checkpoint(tiny_model("wavenet"), tmp_path / "evil")
    os.unlink(paths.weights)
    with pytest.raises(UnsafeCheckpointError):
        load_model(evil)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_RunsCode(str(marker))))
    assert marker.exists()


def test_a_pickle_of_plain_tensors_loads_through_its_card(tmp_path):
    model = tiny_model("wavenet")
    paths = save_checkpoint(model, tmp_path / "imported")
    torch.save({"state_dict": model.state_dict(), "iteration": 7}, tmp_path / "imported.pt")
    os.unlink(paths.weights)
    loaded = load_model(tmp_path / "imported.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "imported.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        read_pickled_tensors(tmp_path / "cut.pt")


def test_resume_uses_the_complete_training_snapshot_even_when_the_weights_are_older(tmp_path):
    """Killed after the snapshot was replaced but before the weights: resume from the snapshot (newer)."""
    from studio.engine.checkpoints import load_for_resume

    stem = tmp_path / "run"
    model = tiny_model("wavenet")
    paths = save_checkpoint(model, stem, TrainingState(step=4))
    old = {p: p.read_bytes() for p in (paths.weights, paths.json)}
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    save_checkpoint(model, stem, TrainingState(step=5))
    for p, data in old.items():
        p.write_bytes(data)
    resumed, state = load_for_resume(stem)
    assert state.step == 5 and torch.equal(resumed.embed.weight, model.embed.weight)
    assert resumed.training
    assert not torch.equal(load_model(stem).embed.weight, model.embed.weight)
