"""``studio models``, ``studio generate``, ``studio vocode`` and ``studio train`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.tiny_training import TINY_WAVEGLOW, TINY_WAVENET, make_speech_folder, tiny_options

from studio.engine.audio.features import PRESETS, compute_mel
from studio.engine.checkpoints import load_model, save_checkpoint
from studio.engine.models.base import GenerateRequest, build_model
from studio.engine.train.loop import train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A user models folder with a trained unconditioned WaveNet ('babble') and a tiny WaveGlow ('glow')."""
    root = tmp_path_factory.mktemp("cli")
    speech = make_speech_folder(root / "speech")
    models = root / "models"
    train(tiny_options(speech, models / "babble", steps=2, checkpoint_every=2))
    torch.manual_seed(0)
    glow = build_model("waveglow", TINY_WAVEGLOW, PRESETS["waveglow"])
    glow.name = "glow"
    save_checkpoint(glow, models / "glow")
    (root / "bundled").mkdir()
    voices = root / "voices"  # the user's voices: a copy of the bundled 'ru', which shadows it
    voices.mkdir()
    for suffix in (".voice.json", ".voice.safetensors"):
        shutil.copy(Path(__file__).resolve().parent.parent / "resources" / "voices" / f"ru{suffix}", voices)
    env = {**os.environ, "STUDIO_MODELS_DIR": str(models), "STUDIO_BUNDLED_MODELS_DIR": str(root / "bundled"),
           "STUDIO_VOICES_DIR": str(voices)}
    return {"root": root, "speech": speech, "models": models, "env": env}


def studio(setup, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=180, env=setup["env"]
    )


def test_models_lists_cards_as_table_and_json(setup):
    out = studio(setup, "models", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    by_name = {m["name"]: m for m in listing["models"]}
    assert set(by_name) == {"babble", "glow"}
    babble = by_name["babble"]["card"]
    assert babble["family"] == "wavenet" and babble["sample_rate"] == 16000 and babble["conditioning"] == "none"
    assert babble["training"]["steps"] == 2 and "heldout_loss" in babble["metrics"]
    assert by_name["glow"]["card"]["profile"]["name"] == "waveglow" and not by_name["glow"]["bundled"]
    table = studio(setup, "models")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SOURCE", "FAMILY", "RATE"]
    babble_row = next(line for line in lines if line.startswith("babble"))
    assert "wavenet" in babble_row and "16000" in babble_row and "speech16k" in babble_row and "heldout_loss" in babble_row


def test_models_lists_the_voices_with_the_models(setup):
    """Voices are saved like models and listed with them: the user's first (shadowing a bundled one of
    the same name), then the bundled ones."""
    listing = json.loads(studio(setup, "models", "--json").stdout)
    voices = {v["name"]: v for v in listing["voices"]}
    assert set(voices) == {"ru", "allison"}
    assert not voices["ru"]["bundled"] and voices["ru"]["path"].startswith(str(setup["root"] / "voices"))
    assert voices["allison"]["bundled"] and 150 < voices["allison"]["median_f0_hz"] < 250
    assert voices["ru"]["speech_minutes"] > 1 and "festvox" in voices["ru"]["description"]
    lines = studio(setup, "models").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("voices"))
    assert lines[start + 1].split() == ["NAME", "SOURCE", "MEDIAN", "F0", "SPEECH", "DESCRIPTION"]
    rows = {line.split()[0]: line.split() for line in lines[start + 2 :]}
    assert rows["ru"][1] == "user" and rows["allison"][1] == "bundled" and rows["allison"][3] == "Hz"


def test_generate_streams_the_models_own_samples_to_a_file(setup, tmp_path):
    out_wav = tmp_path / "free.wav"
    out = studio(setup, "generate", "--model", "babble", "--seconds", "0.05", "--out", str(out_wav), "--seed", "7")
    assert out.returncode == 0, out.stderr
    assert "real time" in out.stdout
    audio, sr = sf.read(out_wav, dtype="float32")
    assert sr == 16000 and audio.shape == (800,)
    model = load_model(setup["models"] / "babble")
    expected = model.generate(GenerateRequest(num_samples=800, seed=7))
    np.testing.assert_allclose(audio, expected, atol=1.5 / 32768)
    assert np.abs(audio).max() > 0


def test_models_table_shows_only_scalar_metrics(setup, tmp_path):
    glow_copy = tmp_path / "models"
    glow_copy.mkdir()
    model = load_model(setup["models"] / "glow")
    model.name = "scored"
    model.extra_card["metrics"] = {"heldout_loss": -2.5, "model": {"pesq": 1.1, "stoi": 0.3}, "metrics": ["pesq"]}
    save_checkpoint(model, glow_copy / "scored")
    out = subprocess.run([sys.executable, "-m", "studio", "models"], capture_output=True, text=True, timeout=120,
                         env={**setup["env"], "STUDIO_MODELS_DIR": str(glow_copy)})
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("scored"))
    assert row.endswith("heldout_loss -2.5") and "{" not in row and "[" not in row


def test_generate_refuses_non_finite_or_huge_settings(setup, tmp_path):
    target = str(tmp_path / "x.wav")
    for args, says in ((["--seconds", "inf"], "at most 3600"), (["--seconds", "1", "--temperature", "nan"], "finite"),
                       (["--seconds", "1", "--sigma", "-1"], ">= 0")):
        out = studio(setup, "generate", "--model", "babble", "--out", target, *args)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not os.path.exists(target)


def test_generate_refuses_a_pickle_that_would_run_code(setup, tmp_path):
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": RunsCode()}, evil)
    (tmp_path / "evil.json").write_bytes((setup["models"] / "babble.json").read_bytes())
    out = studio(setup, "generate", "--model", str(evil), "--seconds", "0.01", "--out", str(tmp_path / "x.wav"))
    assert out.returncode == 2 and "refused" in out.stderr and "posix.system" in out.stderr, out.stderr
    assert not marker.exists()


def test_ctrl_c_keeps_what_generate_made(setup, tmp_path):
    """The first SIGINT cancels between blocks: the audio made so far is saved and the status is 130."""
    import signal

    target = tmp_path / "part.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "generate", "--model", "babble", "--seconds", "600", "--out", str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=setup["env"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert "making 600.00 s" in proc.stderr.readline()  # the model is loaded and generating
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted: wrote the part made so far" in stdout
    frames = sf.info(target).frames
    assert 0 < frames < 600 * 16000


def test_generate_explains_what_a_conditioned_model_needs(setup, tmp_path):
    out = studio(setup, "generate", "--model", "glow", "--seconds", "0.1", "--out", str(tmp_path / "x.wav"))
    assert out.returncode == 2
    assert "mel-conditioned" in out.stderr and "--mel-from" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = studio(setup, "generate", "--model", "nothing", "--seconds", "0.1", "--out", str(tmp_path / "x.wav"))
    assert missing.returncode == 2 and "no model called 'nothing'" in missing.stderr and "babble" in missing.stderr


def test_vocode_resynthesizes_a_file_at_the_models_rate(setup, tmp_path):
    source = setup["speech"] / "utt1.wav"
    out_wav = tmp_path / "voc.wav"
    out = studio(setup, "vocode", str(source), "--model", "glow", "--out", str(out_wav), "--sigma", "0.5")
    assert out.returncode == 0, out.stderr
    assert "× real time" in out.stdout
    audio, sr = sf.read(out_wav, dtype="float32")
    n_in = sf.info(source).frames  # espeak writes 22050 Hz, the model's rate
    assert sr == 22050 and abs(audio.shape[0] - n_in) <= 256
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    # the untrained flow's noise, brought to the file's mel by the spectral projection on request
    projected_wav = tmp_path / "projected.wav"
    out = studio(setup, "vocode", str(source), "--model", "glow", "--out", str(projected_wav), "--sigma", "0.5",
                 "--projection", "4")
    assert out.returncode == 0, out.stderr
    original, _ = sf.read(source, dtype="float32")
    projected, _ = sf.read(projected_wav, dtype="float32")

    def mel_error(made: np.ndarray) -> float:
        n = min(made.size, original.size)
        return float(np.abs(compute_mel(made[:n], PRESETS["waveglow"]) - compute_mel(original[:n], PRESETS["waveglow"])).mean())

    assert mel_error(projected) < 0.5 * mel_error(audio), (mel_error(projected), mel_error(audio))
    out = studio(setup, "vocode", str(source), "--model", "glow", "--out", str(projected_wav), "--projection", "many")
    assert out.returncode == 2 and "'off' or a number of passes" in out.stderr
    # a mel saved as .npy drives generate the same way
    mel = np.zeros((80, 4), np.float32) - 5
    np.save(tmp_path / "mel.npy", mel)
    out = studio(setup, "generate", "--model", "glow", "--seconds", "1", "--mel-from", str(tmp_path / "mel.npy"),
                 "--out", str(tmp_path / "m.wav"))
    assert out.returncode == 0, out.stderr
    assert sf.info(tmp_path / "m.wav").frames == 4 * 256


@pytest.mark.slow
def test_train_command_writes_checkpoint_log_and_sample(setup, tmp_path):
    out = studio(
        setup, "train", "--family", "wavenet", "--data", str(setup["speech"]), "--out", "cli-trained",
        "--profile", "speech16k", "--config", json.dumps(TINY_WAVENET), "--steps", "3", "--batch", "2",
        "--segment", "800", "--checkpoint-every", "2", "--log-every", "1", "--sample-seconds", "0.05",
        "--lr-schedule", "cosine", "--threads", "1",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("completed: step 3") and "held-out loss" in lines[-1]
    assert any(line.startswith("checkpoint") and "step 2/3" in line for line in lines)
    stem: Path = setup["models"] / "cli-trained"
    for suffix in (".json", ".safetensors", ".train.safetensors", ".log.jsonl", ".sample.wav"):
        assert stem.with_name(stem.name + suffix).exists(), suffix
    again = studio(setup, "train", "--family", "wavenet", "--data", str(setup["speech"]), "--out", "cli-trained")
    assert again.returncode == 2 and "--resume" in again.stderr
    bad = studio(setup, "train", "--family", "wavenet", "--data", str(setup["speech"]), "--out", "x", "--config", "{oops")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_train_help_explains_conditioning_and_unconditional(setup):
    out = studio(setup, "train", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "--unconditional" in text and "mel-conditioned vocoders by default" in text


@pytest.mark.slow
def test_train_unconditional_makes_a_model_that_generates_freely(setup, tmp_path):
    stem = tmp_path / "free"
    common = ("--profile", "speech16k", "--steps", "3", "--batch", "2", "--segment", "800",
              "--sample-seconds", "0", "--threads", "1")
    out = studio(setup, "train", "--family", "wavenet", "--data", str(setup["speech"]), "--out", str(stem),
                 "--config", json.dumps(TINY_WAVENET), "--unconditional", *common)
    assert out.returncode == 0, out.stderr
    card = json.loads(stem.with_suffix(".json").read_text())["card"]
    assert card["conditioning"] == "none" and card["config"]["n_mels"] == 0
    assert load_model(stem).card().conditioning == "none"
    gen = studio(setup, "generate", "--model", str(stem), "--seconds", "0.01", "--out", str(tmp_path / "free.wav"))
    assert gen.returncode == 0, gen.stderr
    glow = studio(setup, "train", "--family", "waveglow", "--data", str(setup["speech"]), "--out", str(tmp_path / "g"),
                  "--unconditional", *common)
    assert glow.returncode == 2 and "waveglow always needs mel conditioning" in glow.stderr
    clash = studio(setup, "train", "--family", "wavenet", "--data", str(setup["speech"]), "--out", str(tmp_path / "c"),
                   "--config", '{"n_mels": 80}', "--unconditional", *common)
    assert clash.returncode == 2 and "contradicts" in clash.stderr


@pytest.fixture(scope="module")
def two_speakers(tmp_path_factory) -> Path:
    """A folder with one sub-folder per espeak-ng voice: alice (en-us, female variant) and bob (en, male)."""
    root = tmp_path_factory.mktemp("speakers")
    for name, voice in (("alice", "en-us+f3"), ("bob", "en+m3")):
        (root / name).mkdir()
        for i, text in enumerate(("Seven silver swans swam silently seaward.", "Audio plays while it is made.")):
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(root / name / f"{name}{i}.wav"), text],
                           check=True, timeout=60)
    return root


@pytest.mark.slow
def test_multi_speaker_wavenet_trains_and_generates_each_speaker(setup, two_speakers, tmp_path):
    stem = tmp_path / "duo"
    config = {**TINY_WAVENET, "n_mels": 0, "n_speakers": 2, "speaker_dim": 4}
    out = studio(setup, "train", "--family", "wavenet", "--data", str(two_speakers), "--out", str(stem),
                 "--profile", "speech16k", "--config", json.dumps(config), "--steps", "3", "--batch", "2",
                 "--segment", "800", "--sample-seconds", "0.01", "--threads", "1")
    assert out.returncode == 0, out.stderr
    model = load_model(stem)
    assert model.extra_card["training"]["speakers"] == ["alice", "bob"]
    made = {}
    for speaker in ("alice", "bob", "1"):
        wav = tmp_path / f"{speaker}.wav"
        gen = studio(setup, "generate", "--model", str(stem), "--seconds", "0.02", "--seed", "3",
                     "--speaker", speaker, "--out", str(wav))
        assert gen.returncode == 0, gen.stderr
        made[speaker] = sf.read(wav)[0]
    assert np.array_equal(made["bob"], made["1"])  # the name maps to the id through the card
    assert not np.array_equal(made["alice"], made["bob"])  # the speaker embedding changes the samples
    unknown = studio(setup, "generate", "--model", str(stem), "--seconds", "0.01", "--speaker", "carol",
                     "--out", str(tmp_path / "x.wav"))
    assert unknown.returncode == 2 and "alice, bob" in unknown.stderr
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.wav").write_bytes((two_speakers / "alice" / "alice0.wav").read_bytes())
    loose = studio(setup, "train", "--family", "wavenet", "--data", str(flat), "--out", str(tmp_path / "loose"),
                   "--profile", "speech16k", "--config", json.dumps(config), "--steps", "1", "--threads", "1")
    assert loose.returncode == 2 and "speaker sub-folder" in loose.stderr


def test_model_catalogue_reads_cards_without_importing_torch():
    """`studio models` and the window's model list only read JSON cards: importing torch (~2 s) is not needed."""
    code = (
        "import sys\n"
        "from studio.engine.catalog import list_models\n"
        "entries = list_models()\n"
        "assert entries and all(e.card.family for e in entries), entries\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
