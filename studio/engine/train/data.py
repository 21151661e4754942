"""Training data: audio files found, split into train and held-out files, decoded once, cut into segments.

- ``collect_audio_files``: folders (searched recursively), files and glob patterns → sorted paths.
- ``split_files``: a deterministic split by a hash of each file's name (the same file is held out on
  every machine and every run), at least one held-out file; or the files matching a ``--heldout`` glob.
- ``AudioCorpus``: every file decoded once at the model's rate and kept in memory as int16.
- ``SegmentSampler``: random batches of ``[B, T]`` float32 segments, drawn with an explicit
  ``torch.Generator`` so each distributed rank (and each resumed step) gets its own reproducible stream.
- ``heldout_segments``: a fixed, evenly spread set of held-out segments for a comparable held-out loss.
- ``speaker_folders``: multi-speaker data (models with ``n_speakers > 0``): each immediate sub-folder of
  the one data folder is a speaker; sorted folder names give the ids 0, 1, ...

Everything here runs on the training thread; nothing holds a file open after loading.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
DEFAULT_HELDOUT_FRACTION = 0.05
SINGLE_FILE_HELDOUT_FRACTION = 0.1


class DatasetError(Exception):
    """The training data cannot be used (no audio found, every file unreadable, too short...)."""


def collect_audio_files(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Audio files named by ``sources``: folders (recursively), files, or glob patterns; sorted, unique."""
    found: set[Path] = set()
    for source in sources:
        text = os.fspath(source)
        path = Path(text).expanduser()
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            found.add(path)
        elif glob.has_magic(text):
            found.update(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
        else:
            raise DatasetError(f"{text}: no such file or folder")
    if not found:
        raise DatasetError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {', '.join(map(os.fspath, sources))}"
        )
    return sorted(found)


def speaker_folders(sources: Sequence[str | os.PathLike[str]], files: Sequence[Path]) -> tuple[list[str], dict[Path, int]]:
    """(speaker names, speaker id of each file) for multi-speaker training.

    The convention: ``sources`` is one folder and each of its immediate sub-folders holding audio is one
    speaker; the sorted folder names are the speakers, their positions the ids. Every file must lie in
    such a sub-folder (deeper nesting is fine: the first level names the speaker).
    """
    if len(sources) != 1 or not Path(os.fspath(sources[0])).expanduser().is_dir():
        raise DatasetError(
            "a multi-speaker model (n_speakers > 0) trains on one folder with one sub-folder of audio per speaker"
        )
    root = Path(os.fspath(sources[0])).expanduser()
    of_file: dict[Path, str] = {}
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise DatasetError(
                f"{path}: for a multi-speaker model every file must be in a speaker sub-folder of {root} "
                "(the sub-folder's name is the speaker)"
            )
        of_file[path] = parts[0]
    names = sorted(set(of_file.values()))
    ids = {name: i for i, name in enumerate(names)}
    return names, {path: ids[name] for path, name in of_file.items()}


def prepared_set_splits(sources: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]] | None:
    """(train files, held-out files) of a prepared set (``studio data prepare``), or None for other sources.

    Only a single source that is a prepared set's folder or manifest counts. Its ``train`` split is
    trained on; its ``validation`` split (else ``reserve``) is the held-out loss set; ``test`` is never
    touched here (``studio eval`` scores it).
    """
    if len(sources) != 1:
        return None
    from studio.engine.datasets.manifest import DatasetError as ManifestError
    from studio.engine.datasets.manifest import is_prepared_set, read_manifest

    if not is_prepared_set(sources[0]):
        return None
    try:
        manifest = read_manifest(sources[0])
    except ManifestError as exc:
        raise DatasetError(str(exc)) from None
    train = [item.path for item in manifest.split("train")]
    heldout = [item.path for item in manifest.split("validation")] or [item.path for item in manifest.split("reserve")]
    if not train:
        raise DatasetError(f"{manifest.root}: the prepared set has no 'train' items")
    if not heldout:
        raise DatasetError(f"{manifest.root}: the prepared set has no 'validation' (or 'reserve') items to hold out")
    return train, heldout


def _name_hash(path: Path) -> float:
    """A number in [0, 1) fixed by the file's name alone (not its folder, not the machine)."""
    digest = hashlib.sha256(path.name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(
    files: Sequence[Path], heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, heldout_glob: str | None = None
) -> tuple[list[Path], list[Path]]:
    """(train files, held-out files), deterministic.

    With ``heldout_glob`` the files whose name or path matches it are held out. Otherwise a file is held
    out when the hash of its name falls below ``heldout_fraction``; at least one file is held out (the
    one with the smallest hash) as long as one is left to train on. A single file is returned as both
    (``AudioCorpus.split_tail`` then holds out the end of it).
    """
    files = list(files)
    if len(files) == 1:
        return files, []
    if heldout_glob:
        heldout = [p for p in files if fnmatch.fnmatch(p.name, heldout_glob) or fnmatch.fnmatch(str(p), heldout_glob)]
        if not heldout:
            raise DatasetError(f"--heldout '{heldout_glob}' matches none of the {len(files)} audio files")
        if len(heldout) == len(files):
            raise DatasetError(f"--heldout '{heldout_glob}' matches every audio file; nothing is left to train on")
    else:
        ranked = sorted(files, key=_name_hash)
        heldout = [p for p in ranked if _name_hash(p) < heldout_fraction][: len(files) - 1] or ranked[:1]
    held = set(heldout)
    return [p for p in files if p not in held], sorted(held)


@dataclass
class AudioCorpus:
    """Decoded clips at one sample rate, int16 in memory (half of float32; 16-bit is the sources' depth).

    clips: one 1-D int16 array per file. names: the files' names (for the card and logs).
    speakers: one speaker id per clip (all 0 for single-speaker data).
    """

    sample_rate: int
    clips: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    speakers: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, files: Sequence[Path], sample_rate: int, speaker_of: dict[Path, int] | None = None) -> AudioCorpus:
        """Decode ``files`` (mono, resampled to ``sample_rate``); unreadable files are skipped with a warning.

        speaker_of: each file's speaker id (default 0).
        """
        from studio.engine.audio.files import AudioFileError, load

        corpus = cls(sample_rate)
        for path in files:
            try:
                audio, _ = load(path, sample_rate=sample_rate, mono=True)
            except AudioFileError as exc:
                log.warning("skipping training file: %s", exc)
                continue
            corpus.add(audio, path.name, speaker_of.get(path, 0) if speaker_of else 0)
        return corpus

    def add(self, audio: np.ndarray, name: str, speaker: int = 0) -> None:
        """Add float audio in [-1, 1], shape [T], spoken by ``speaker``."""
        clip = np.clip(np.round(np.asarray(audio, np.float32) * 32767.0), -32768, 32767).astype(np.int16)
        self.clips.append(clip)
        self.names.append(name)
        self.speakers.append(int(speaker))

    @property
    def total_samples(self) -> int:
        return sum(int(c.shape[0]) for c in self.clips)

    @property
    def seconds(self) -> float:
        return self.total_samples / self.sample_rate

    def split_tail(self, fraction: float = SINGLE_FILE_HELDOUT_FRACTION, minimum: int = 0) -> AudioCorpus:
        """Move the last ``fraction`` (at least ``minimum`` samples) of every clip into a new corpus.

        Used when there is a single file, so that held-out audio is still audio the model never trained on.
        """
        tail = AudioCorpus(self.sample_rate)
        for i, clip in enumerate(self.clips):
            n = min(max(int(clip.shape[0] * fraction), minimum), clip.shape[0] // 2)
            if n <= 0:
                continue
            tail.clips.append(clip[-n:].copy())
            tail.names.append(f"{self.names[i]} (last {n / self.sample_rate:.2f} s)")
            tail.speakers.append(self.speakers[i])
            self.clips[i] = clip[:-n].copy()
        return tail

    def segment(self, index: int, start: int, length: int) -> np.ndarray:
        """float32 [length] from clip ``index`` at ``start``, zero-padded past its end."""
        clip = self.clips[index]
        piece = clip[start : start + length].astype(np.float32) / 32768.0
        if piece.shape[0] < length:
            piece = np.pad(piece, (0, length - piece.shape[0]))
        return piece


class SegmentSampler:
    """Random training batches: clips chosen in proportion to their length, uniform start offsets."""

    def __init__(self, corpus: AudioCorpus, segment: int, batch: int) -> None:
        if not corpus.clips:
            raise DatasetError("no training audio left after decoding (every file was skipped)")
        self.corpus = corpus
        self.segment = int(segment)
        self.batch = int(batch)
        lengths = np.array([max(int(c.shape[0]) - self.segment, 0) + 1 for c in corpus.clips], dtype=np.float64)
        self._weights = torch.from_numpy(lengths / lengths.sum())
        self._spans = [int(n) for n in lengths]

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """float32 [batch, segment] on the CPU, drawn from ``generator`` only."""
        return self.sample_with_speakers(generator)[0]

    def sample_with_speakers(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 [batch, segment], int64 [batch] speaker ids) on the CPU, drawn from ``generator`` only."""
        clips = torch.multinomial(self._weights, self.batch, replacement=True, generator=generator).tolist()
        rows = []
        for index in clips:
            start = int(torch.randint(self._spans[index], (1,), generator=generator))
            rows.append(self.corpus.segment(index, start, self.segment))
        speakers = torch.tensor([self.corpus.speakers[i] for i in clips], dtype=torch.long)
        return torch.from_numpy(np.stack(rows)), speakers


def heldout_segments(corpus: AudioCorpus, segment: int, count: int) -> torch.Tensor:
    """Up to ``count`` held-out segments [N, segment], spread evenly over all held-out audio (fixed)."""
    return torch.from_numpy(np.stack([corpus.segment(i, s, segment) for i, s in _heldout_picks(corpus, segment, count)]))


def heldout_speakers(corpus: AudioCorpus, segment: int, count: int) -> torch.Tensor:
    """int64 [N]: the speaker id of each of ``heldout_segments(corpus, segment, count)``."""
    return torch.tensor([corpus.speakers[i] for i, _ in _heldout_picks(corpus, segment, count)], dtype=torch.long)


def _heldout_picks(corpus: AudioCorpus, segment: int, count: int) -> list[tuple[int, int]]:
    """(clip index, start) of the fixed held-out segments."""
    candidates: list[tuple[int, int]] = []
    for index, clip in enumerate(corpus.clips):
        n = int(clip.shape[0])
        starts = list(range(0, max(n - segment, 0) + 1, segment)) or [0]
        candidates.extend((index, s) for s in starts)
    if not candidates:
        raise DatasetError("no held-out audio")
    if len(candidates) > count:
        picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
        candidates = [candidates[i] for i in picks]
    return candidates


def describe_data(sources: Sequence[str], train: AudioCorpus, heldout: AudioCorpus) -> dict[str, object]:
    """What the model card records about the data."""
    return {
        "sources": [os.fspath(s) for s in sources],
        "train_files": len(train.clips),
        "train_seconds": round(train.seconds, 2),
        "heldout_files": heldout.names[:20],
        "heldout_seconds": round(heldout.seconds, 2),
        "sample_rate": train.sample_rate,
    }
