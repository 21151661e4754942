"""Real speech for training tests (espeak-ng) and tiny model configs that train in seconds on a CPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A studio for neural waveform models.",
    "Seven silver swans swam silently seaward.",
    "Generated audio plays while it is being made.",
)

TINY_WAVENET = {
    "layers": 4,
    "dilation_cycle": 4,
    "residual_channels": 8,
    "gate_channels": 16,
    "skip_channels": 16,
    "cond_channels": 8,
    "mu_bits": 6,
}
TINY_WAVENET_UNCONDITIONED = {**TINY_WAVENET, "n_mels": 0}
TINY_WAVEGLOW = {"n_flows": 2, "n_early_every": 4, "wn_layers": 2, "wn_channels": 8, "upsample_window": 256}


def make_speech_folder(folder: Path) -> Path:
    """Write one espeak-ng WAV (22.05 kHz, ~2 s) per sentence into ``folder``; returns it."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (scripts/setup installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-s", "190", "-w", str(folder / f"utt{i}.wav"), text], check=True, timeout=60)
    return folder


def tiny_options(data: Path, out: Path, **overrides):
    """TrainOptions for a tiny unconditioned WaveNet on ``data`` (a few steps take about a second)."""
    from studio.engine.train.options import TrainOptions

    base = {
        "family": "wavenet",
        "data": [str(data)],
        "out": str(out),
        "config": dict(TINY_WAVENET_UNCONDITIONED),
        "profile": "speech16k",
        "steps": 6,
        "batch": 2,
        "segment": 800,
        "lr": 3e-3,
        "checkpoint_every": 3,
        "log_every": 1,
        "heldout_segments": 4,
        "sample_seconds": 0.05,
    }
    base.update(overrides)
    return TrainOptions(**base)


def espeak_word(folder: Path, sample_rate: int, peak: float, word: str = "seven") -> np.ndarray:
    """One espeak-ng word (~0.6 s of real formant speech) at ``sample_rate``, trimmed to where it is
    louder than 0.02 and scaled to ``peak``: float32 [T]. Skips the test when espeak-ng is missing."""
    import pytest
    import soundfile as sf
    import soxr

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    path = folder / "word.wav"
    subprocess.run([exe, "-w", str(path), "-s", "160", word], check=True, capture_output=True)
    audio, rate = sf.read(path, dtype="float32")
    audio = soxr.resample(audio, rate, sample_rate)
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    audio = audio[loud[0] : loud[-1]]
    return (peak * audio / np.abs(audio).max()).astype(np.float32)
