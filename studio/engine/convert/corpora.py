"""The real speakers the shipped voices are built from (Debian packages, see DATA.md), with fixed splits.

- ``ru``: festvox-ru (``apt-get install festvox-ru``), one male Russian speaker, 16 kHz WAV;
  held out: ru_0801 … ru_0844 (the project-wide rule, never used to build or train anything).
- ``allison``: asterisk-core-sounds-en-g722 (``apt-get install asterisk-core-sounds-en-g722``), one female
  US English speaker (Allison Smith) reading telephone prompts, G.722 at 16 kHz, decoded with PyPI
  ``av``; tones, beeps and the ``silence/`` folder are left out; held out: every 12th prompt in name
  order (index % 12 == 5).

``load_speech`` reads any file ``files.load`` reads plus ``.g722``. Runs on the calling thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.engine.audio import files as audio_files
from studio.engine.audio.resample import resample
from studio.engine.convert.voice import VoiceError
from studio.engine.convert.world import MissingDependencyError

FESTVOX_RU_DIR = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav")
ALLISON_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
_NOT_SPEECH = re.compile(r"(beep|tone|^silence$)", re.IGNORECASE)


@dataclass(frozen=True)
class Corpus:
    """One speaker's recordings: ``train`` builds voices, ``held_out`` is only ever scored."""

    name: str
    train: list[Path]
    held_out: list[Path]
    description: str
    licence: str
    package: str


def load_speech(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Mono float32 [T] at ``sample_rate`` from a WAV/FLAC/OGG/MP3 file or a raw G.722 file."""
    p = Path(path)
    if p.suffix.lower() != ".g722":
        audio, _ = audio_files.load(p, sample_rate=sample_rate)
        return audio
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError(f"{p}: decoding G.722 needs PyPI av (`pip install 'waveform-studio[voice]'`)") from exc
    if not p.is_file():
        raise audio_files.AudioFileNotFound(f"{str(p)!r} does not exist: check the path", p)
    try:
        with av.open(str(p), format="g722") as container:
            stream = container.streams.audio[0]
            rate = int(stream.rate)
            chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise audio_files.CorruptAudioError(f"{str(p)!r} is not a readable G.722 file ({exc})", p) from exc
    if not chunks:
        raise audio_files.EmptyAudioError(f"{str(p)!r} holds no audio", p)
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    return resample(audio, rate, sample_rate) if rate != sample_rate else audio


def festvox_ru(root: Path = FESTVOX_RU_DIR) -> Corpus:
    wavs = sorted(root.glob("ru_*.wav"))
    if not wavs:
        raise VoiceError(f"festvox-ru is not installed (no {root}/ru_*.wav); run `apt-get install festvox-ru`")
    held = [p for p in wavs if 801 <= int(p.stem[3:7]) <= 844]
    return Corpus(
        name="ru",
        train=[p for p in wavs if p not in held],
        held_out=held,
        description="male Russian speaker (festvox-ru, msu_ru_nsh)",
        licence="BSD-like (festvox-ru, Nickolay V. Shmyrev 2005)",
        package="festvox-ru",
    )


def allison(root: Path = ALLISON_DIR) -> Corpus:
    prompts = sorted(p for p in root.glob("*.g722") if not _NOT_SPEECH.search(p.stem))
    if not prompts:
        raise VoiceError(f"the Allison prompts are not installed (no {root}/*.g722); run `apt-get install asterisk-core-sounds-en-g722`")
    held = [p for i, p in enumerate(prompts) if i % 12 == 5]
    return Corpus(
        name="allison",
        train=[p for p in prompts if p not in held],
        held_out=held,
        description="female US English speaker (Allison Smith, Asterisk prompts)",
        licence="CC-BY-SA-3.0 (Asterisk core sounds, Digium)",
        package="asterisk-core-sounds-en-g722",
    )


CORPORA = {"ru": festvox_ru, "allison": allison}


def corpus(name: str) -> Corpus:
    try:
        return CORPORA[name]()
    except KeyError:
        raise VoiceError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}") from None


BUNDLED_MINUTES = 8.0
EMBEDDING_UTTERANCES = 12


def build_corpus_voice(name: str, minutes: float = BUNDLED_MINUTES, progress=None):
    """The shipped voice of corpus ``name`` (``ru`` or ``allison``): built from ``minutes`` of its
    training split (every third festvox-ru utterance, to cover more of the corpus), with the
    resemblyzer centroid of 12 other training utterances when resemblyzer is installed."""
    from studio.engine.convert import speaker_similarity
    from studio.engine.convert.voice import build_voice

    c = corpus(name)
    files = c.train[::3] if name == "ru" else c.train
    voice = build_voice(
        name, files, description=c.description, max_minutes=minutes, progress=progress,
        provenance={"corpus": c.name, "package": c.package, "licence": c.licence,
                    "held_out": "never used: " + ("ru_0801–ru_0844" if name == "ru" else "every 12th prompt (index % 12 == 5)")},
    )
    if speaker_similarity.available():
        others = [p for p in c.train if p not in files[: voice.provenance.get("files", 0)]]
        picks = others[1 :: max(1, len(others) // EMBEDDING_UTTERANCES)][:EMBEDDING_UTTERANCES]
        voice.arrays["speaker_embedding"] = speaker_similarity.centroid(
            speaker_similarity.embed(load_speech(p, 16000), 16000) for p in picks
        )
        voice.provenance["speaker_embedding"] = f"resemblyzer GE2E centroid of {len(picks)} training utterances"
    return voice


def main(argv: list[str] | None = None) -> int:
    """Rebuild the shipped voices: ``python -m studio.engine.convert.corpora [--out DIR] [ru allison]``."""
    import argparse
    import logging

    from studio.engine.convert.voice import save_voice

    parser = argparse.ArgumentParser(prog="python -m studio.engine.convert.corpora", description=main.__doc__)
    parser.add_argument("names", nargs="*", default=sorted(CORPORA), help="corpora to build voices of (default: all)")
    parser.add_argument("--out", default="resources/voices", help="folder to write NAME.voice.* into")
    parser.add_argument("--minutes", type=float, default=BUNDLED_MINUTES, help="audio analysed per voice")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names:
        path = save_voice(build_corpus_voice(name, args.minutes), Path(args.out) / name)
        print(f"{path} ({path.with_name(name + '.voice.safetensors').stat().st_size / 1e6:.2f} MB arrays)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
