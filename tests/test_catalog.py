"""Model discovery: user and bundled folders, broken entries skipped with a reason, lookup by name/path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from studio.engine.audio.features import PRESETS
from studio.engine.catalog import (
    ModelNotFoundError,
    bundled_models_dir,
    find_model,
    list_models,
    scan_models,
    user_models_dir,
)
from studio.engine.checkpoints import CheckpointError, save_checkpoint
from studio.engine.models.base import build_model

TINY = {"layers": 2, "dilation_cycle": 2, "residual_channels": 4, "gate_channels": 8, "skip_channels": 4,
        "mu_bits": 4, "n_mels": 0}


def save_tiny(folder: Path, name: str, description: str = "") -> Path:
    torch.manual_seed(0)
    model = build_model("wavenet", TINY, PRESETS["speech16k"])
    model.name = name
    model.extra_card["description"] = description
    return save_checkpoint(model, folder / name).stem


@pytest.fixture
def folders(tmp_path, monkeypatch):
    user, bundled = tmp_path / "user", tmp_path / "bundled"
    user.mkdir()
    bundled.mkdir()
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(user))
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(bundled))
    return user, bundled


def test_user_models_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STUDIO_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_models_dir() == tmp_path / "xdg" / "waveform-studio" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_models_dir() == tmp_path / "home" / ".local" / "share" / "waveform-studio" / "models"
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"


def test_bundled_models_are_found_next_to_the_source_checkout(monkeypatch):
    monkeypatch.delenv("STUDIO_BUNDLED_MODELS_DIR", raising=False)
    repo = Path(__file__).resolve().parent.parent
    assert bundled_models_dir() == repo / "resources" / "models"


def test_listing_reads_both_folders_user_first_and_shadows_by_name(folders):
    user, bundled = folders
    save_tiny(bundled, "speech", "bundled one")
    save_tiny(bundled, "music")
    save_tiny(user, "speech", "my own")
    entries = list_models()
    assert [(e.name, e.bundled) for e in entries] == [("speech", False), ("music", True)]
    assert entries[0].card.description == "my own"
    assert entries[1].card.family == "wavenet" and entries[1].card.sample_rate == 16000
    assert entries[1].weights_path.exists() and entries[1].json_path.exists()


def test_broken_entries_are_skipped_with_a_logged_reason(folders, caplog):
    user, _ = folders
    save_tiny(user, "good")
    (user / "garbled.json").write_text("{ nope")
    missing = save_tiny(user, "orphan")
    missing.with_name("orphan.safetensors").unlink()
    (user / "notes.json").write_text('{"hello": "world"}')
    with caplog.at_level(logging.WARNING):
        scan = scan_models()
    assert [e.name for e in scan.entries] == ["good"]
    reasons = {b.path.name: b.reason for b in scan.broken}
    assert set(reasons) == {"garbled.json", "orphan.json", "notes.json"}
    assert "not valid JSON" in reasons["garbled.json"]
    assert "weights file orphan.safetensors is missing" in reasons["orphan.json"]
    assert "not a Waveform Studio checkpoint" in reasons["notes.json"]
    assert caplog.text.count("skipping model") == 3


def test_find_model_by_name_or_path(folders, tmp_path):
    user, bundled = folders
    save_tiny(bundled, "speech")
    elsewhere = save_tiny(tmp_path / "elsewhere", "loose")
    assert find_model("speech").bundled
    for spelling in (elsewhere, f"{elsewhere}.json", f"{elsewhere}.safetensors"):
        entry = find_model(spelling)
        assert entry.name == "loose" and entry.path == elsewhere and not entry.bundled
    with pytest.raises(ModelNotFoundError, match=r"no model called 'nothing' \(known models: speech"):
        find_model("nothing")
    with pytest.raises(ModelNotFoundError, match="no checkpoint there"):
        find_model(str(tmp_path / "nowhere" / "x"))
    (user / "broken.json").write_text("[]")
    (user / "broken.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a Waveform Studio checkpoint"):
        find_model("broken")
