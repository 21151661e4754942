"""Writing the audio files of a prepared set: mono 16-bit FLAC, atomically, with exact integer samples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] → int16 on the ×32768 scale (what ``processing.quantise`` rounds to)."""
    return np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def write_flac(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> int:
    """Write mono float audio as 16-bit FLAC (temporary file + rename); returns the file's size in bytes.

    The samples are converted to int16 here (×32768, rounded) rather than by libsndfile, so values already
    on a coarser grid keep their zero low bits and FLAC stores them as wasted bits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(tmp, to_pcm16(audio), int(sample_rate), format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)
    return path.stat().st_size


def folder_bytes(root: str | os.PathLike[str]) -> int:
    """Total size in bytes of the files under ``root``."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
