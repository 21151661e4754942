"""festvox-ru: one male Russian speaker, 620 clean studio utterances (99.5 min, 16 kHz), from Debian.

Source: the Debian package ``festvox-ru`` (installs nothing here; ``apt-get install festvox-ru`` or
``scripts/setup-data`` brings it), WAVs in ``/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav``
with transcripts in ``etc/txt.done.data``. Licence: BSD-like (Nickolay V. Shmyrev, 2005); the notice is
copied into the prepared set as ``LICENSE-festvox-ru.txt``.

Preparation: trim leading/trailing silence (keep 0.1 s), set the active speech level to −20 dBFS
(peaks limited to −1 dBFS), resample if another rate is asked for, round to 14 bits (``bits``) and
write mono 16-bit FLAC (the zero low bits cost nothing). Everything (test included) fits the default
56 MiB budget with 65 min of training speech.

Fixed held-out split (never trained on): every utterance from ru_0801 to ru_0844 —
``test`` = the 6 used for the published baselines (ru_0837 … ru_0844, 55.5 s),
``validation`` = 6 more (ru_0829 … ru_0835), ``reserve`` = the other 20 of that range.
Training utterances are taken in order (ru_0001 upwards) until the size budget is reached.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from studio.engine.audio import files
from studio.engine.datasets import processing
from studio.engine.datasets.common import (
    AUDIO_DIR,
    DEFAULT_BUDGET_MIB,
    MIB,
    PrepareReport,
    SourceMissingError,
    audio_budget_bytes,
    prepare_output_folder,
    write_final_manifest,
)
from studio.engine.datasets.manifest import summarise
from studio.engine.datasets.writer import write_flac

log = logging.getLogger(__name__)

NAME = "festvox-ru"
APT_PACKAGE = "festvox-ru"
DEFAULT_SOURCE = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")
COPYRIGHT_FILE = Path("/usr/share/doc/festvox-ru/copyright")
SOURCE_RATE = 16_000
DEFAULT_BITS = 14
HELD_OUT_RANGE = (801, 844)
TEST_IDS = ("ru_0837", "ru_0839", "ru_0840", "ru_0841", "ru_0842", "ru_0844")
VALIDATION_IDS = ("ru_0829", "ru_0830", "ru_0831", "ru_0832", "ru_0834", "ru_0835")
_ID = re.compile(r"^ru_(\d{4})$")
_TRANSCRIPT = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def find_source(source: str | Path | None = None) -> Path:
    """The voice's folder (with ``wav/``), or ``SourceMissingError`` saying how to install it."""
    root = Path(source).expanduser() if source is not None else DEFAULT_SOURCE
    if not (root / "wav").is_dir() or not any((root / "wav").glob("ru_*.wav")):
        raise SourceMissingError(
            f"the festvox-ru recordings are not at {root}/wav: install the Debian package "
            f"(sudo apt-get install --no-install-recommends {APT_PACKAGE}, 179 MB, or scripts/setup-data)"
        )
    return root


def split_of(utterance_id: str) -> str:
    """The fixed split of an utterance id (``ru_0042`` → ``train``, ``ru_0840`` → ``test``)."""
    if utterance_id in TEST_IDS:
        return "test"
    if utterance_id in VALIDATION_IDS:
        return "validation"
    m = _ID.match(utterance_id)
    if m and HELD_OUT_RANGE[0] <= int(m.group(1)) <= HELD_OUT_RANGE[1]:
        return "reserve"
    return "train"


def read_transcripts(root: Path) -> dict[str, str]:
    """Utterance id → Russian text, from ``etc/txt.done.data`` (empty when the file is absent)."""
    path = root / "etc" / "txt.done.data"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def prepare_festvox_ru(
    out: str | Path,
    rate: int = SOURCE_RATE,
    budget_mib: float | None = DEFAULT_BUDGET_MIB,
    bits: int = DEFAULT_BITS,
    source: str | Path | None = None,
    max_train_minutes: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Prepare festvox-ru into ``out`` (see the module doc); returns what was written.

    rate: output sample rate in Hz. budget_mib: cap on the whole set's size (None = no cap); the held-out
    splits always go in, training utterances are added in order until the next would pass the cap.
    bits: 14 by default (FLAC a fifth smaller than 16-bit, rounding noise near −89 dBFS, below the
    recordings' own ~−83 dBFS floor); 16 keeps the samples exactly (``processing.quantise``).
    max_train_minutes: also stop adding training audio past this much. progress(done, total) after each file.
    """
    started = time.perf_counter()
    root = find_source(source)
    wavs = sorted((root / "wav").glob("ru_*.wav"))
    transcripts = read_transcripts(root)
    out_dir = prepare_output_folder(out)
    budget = audio_budget_bytes(budget_mib)
    # Held-out first: they always go in, whatever the budget.
    order = sorted(wavs, key=lambda p: (split_of(p.stem) == "train", p.stem))
    items: list[dict] = []
    written = 0
    left_out, left_out_seconds = 0, 0.0
    train_seconds = 0.0
    full = False
    for n, wav in enumerate(order, 1):
        uid = wav.stem
        split = split_of(uid)
        if split == "train" and full:
            left_out += 1
            left_out_seconds += files.info(wav, stats=False).duration_s
            continue
        audio, sr = files.load(wav, mono=True)
        audio = processing.clean_up(audio, sr, rate, bits)
        target = out_dir / AUDIO_DIR / f"{uid}.flac"
        size = write_flac(target, audio, rate)
        seconds = audio.size / rate
        over_budget = budget is not None and written + size > budget
        over_minutes = max_train_minutes is not None and train_seconds + seconds > max_train_minutes * 60
        if split == "train" and (over_budget or over_minutes):
            target.unlink()
            full = True
            left_out += 1
            left_out_seconds += seconds
            continue
        written += size
        if split == "train":
            train_seconds += seconds
        items.append({
            "id": uid, "path": f"{AUDIO_DIR}/{uid}.flac", "split": split, "samples": int(audio.size),
            "seconds": round(seconds, 4), "text": transcripts.get(uid, ""),
        })
        if progress is not None:
            progress(n, len(order))
    if budget is not None and written > budget:
        log.warning("the held-out utterances alone take %.1f MiB, over the %.1f MiB budget", written / MIB, budget_mib)
    items.sort(key=lambda i: i["id"])
    if COPYRIGHT_FILE.is_file():
        shutil.copyfile(COPYRIGHT_FILE, out_dir / "LICENSE-festvox-ru.txt")
    document = {
        "name": NAME,
        "kind": "speech",
        "sample_rate": int(rate),
        "source": {
            "debian_package": APT_PACKAGE, "folder": str(root), "files": len(wavs), "rate": SOURCE_RATE,
            "speaker": "one male Russian speaker (msu_ru_nsh)",
        },
        "licence": "BSD-like, Copyright (c) 2005 Nickolay V. Shmyrev; see LICENSE-festvox-ru.txt",
        "preparation": {
            "trim_range_db": processing.DEFAULT_TRIM_RANGE_DB, "trim_margin_s": processing.DEFAULT_MARGIN_SECONDS,
            "active_level_dbfs": processing.DEFAULT_TARGET_DBFS, "peak_limit_dbfs": processing.DEFAULT_PEAK_DBFS,
            "bits": int(bits), "format": "FLAC 16-bit mono", "budget_mib": budget_mib,
            "max_train_minutes": max_train_minutes, "left_out_train_items": left_out,
        },
        "held_out": {
            "rule": f"ru_{HELD_OUT_RANGE[0]:04d}–ru_{HELD_OUT_RANGE[1]:04d} never trained on",
            "test": list(TEST_IDS), "validation": list(VALIDATION_IDS),
        },
        "items": items,
        "summary": summarise(items),
    }
    total = write_final_manifest(out_dir, document)
    return PrepareReport(
        out=out_dir, splits=document["summary"], bytes=total, wall_seconds=time.perf_counter() - started,
        left_out=left_out, left_out_seconds=left_out_seconds,
        notes=[f"{rate} Hz mono FLAC, {bits}-bit; held out: ru_0801–ru_0844"],
    )

