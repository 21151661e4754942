"""Music with exactly known notes: music21 corpus scores rendered with real sampled instruments.

Source: the Bach works in PyPI ``music21``'s corpus (408 MusicXML files, mostly four-part chorales),
each written to MIDI by music21 and rendered by Debian ``fluidsynth`` with a General MIDI soundfont
(``timgm6mb-soundfont``, 6 MB, GPL-2, or ``fluid-soundfont-gm``, 148 MB, MIT). Nothing is installed
here: ``scripts/setup-data`` (or ``apt-get install fluidsynth timgm6mb-soundfont`` and
``pip install -e .[data]``) brings them.

Every part of a piece is played by one GM program (default 0, acoustic grand piano; ``programs``
cycles through several, piece by piece). Rendering: mono at ``rate`` (16 kHz), silence trimmed,
active level −20 dBFS (peaks ≤ −1 dBFS), rounded to 14 bits, FLAC. Pieces are taken in name order until
``minutes`` of audio; fixed held-out split by position in that order: every 10th piece (index 9, 19, …)
is ``test``, index 4, 14, … ``validation``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from studio.engine.audio import files
from studio.engine.datasets import processing
from studio.engine.datasets.common import (
    AUDIO_DIR,
    DEFAULT_BUDGET_MIB,
    PrepareReport,
    SourceMissingError,
    audio_budget_bytes,
    prepare_output_folder,
    write_final_manifest,
)
from studio.engine.datasets.manifest import summarise
from studio.engine.datasets.writer import write_flac

log = logging.getLogger(__name__)

NAME = "music21-bach"
SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
DEFAULT_MINUTES = 20.0
DEFAULT_PROGRAMS = (0,)
DEFAULT_BITS = 14
RENDER_TIMEOUT_S = 300
INSTALL_APT = "sudo apt-get install --no-install-recommends fluidsynth timgm6mb-soundfont"


def split_of_index(index: int) -> str:
    """The fixed split of the piece at ``index`` in name order."""
    return {9: "test", 4: "validation"}.get(index % 10, "train")


def find_fluidsynth() -> str:
    """The ``fluidsynth`` program, or ``SourceMissingError`` with the apt command."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise SourceMissingError(f"fluidsynth is not installed: {INSTALL_APT} (or scripts/setup-data)")
    return exe


def find_soundfont(soundfont: str | Path | None = None) -> Path:
    """The given soundfont, else the first installed GM soundfont, else ``SourceMissingError``."""
    if soundfont is not None:
        p = Path(soundfont).expanduser()
        if not p.is_file():
            raise SourceMissingError(f"{p}: no such soundfont file")
        return p
    for p in SOUNDFONTS:
        if p.is_file():
            return p
    raise SourceMissingError(f"no General MIDI soundfont found (looked for {', '.join(map(str, SOUNDFONTS))}): {INSTALL_APT}")


def _music21():
    try:
        import music21
    except ImportError as exc:
        raise SourceMissingError("the music21 corpus is not installed: pip install -e .[data] (or scripts/setup-data)") from exc
    return music21


def corpus_pieces(composer: str = "bach") -> list[Path]:
    """MusicXML scores of ``composer`` in music21's corpus, sorted by file name."""
    music21 = _music21()
    return sorted((Path(p) for p in music21.corpus.getComposer(composer) if str(p).endswith((".mxl", ".xml"))),
                  key=lambda p: p.name)


def write_midi(score_path: Path, midi_path: Path, program: int) -> None:
    """Parse a score and write it as MIDI with every part on GM ``program`` (0–127)."""
    music21 = _music21()
    score = music21.corpus.parse(str(score_path))
    for part in score.parts:
        for old in list(part.recurse().getElementsByClass(music21.instrument.Instrument)):
            part.remove(old, recurse=True)
        part.insert(0, music21.instrument.instrumentFromMidiProgram(int(program)))
    score.write("midi", fp=str(midi_path))


def render(midi_path: Path, wav_path: Path, soundfont: Path, rate: int) -> None:
    """Render MIDI to a WAV at ``rate`` with fluidsynth (fast, offline, no audio device)."""
    cmd = [find_fluidsynth(), "-ni", "-q", "-g", "0.6", "-r", str(int(rate)), "-F", str(wav_path), str(soundfont), str(midi_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False)
    if done.returncode != 0 or not wav_path.is_file():
        raise RuntimeError(f"fluidsynth failed on {midi_path.name} ({done.returncode}): {done.stderr.strip()[-300:]}")


def prepare_music(
    out: str | Path,
    minutes: float = DEFAULT_MINUTES,
    rate: int = 16_000,
    programs: Sequence[int] = DEFAULT_PROGRAMS,
    soundfont: str | Path | None = None,
    budget_mib: float | None = DEFAULT_BUDGET_MIB,
    bits: int = DEFAULT_BITS,
    composer: str = "bach",
    progress: Callable[[int, float], None] | None = None,
) -> PrepareReport:
    """Render about ``minutes`` of corpus music into ``out`` (see the module doc); returns what was written.

    Stops at ``minutes`` or when the next piece would pass ``budget_mib``. progress(pieces_done, seconds_so_far).
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if not programs or any(not 0 <= int(p) <= 127 for p in programs):
        raise ValueError(f"programs must be GM program numbers 0–127, got {list(programs)}")
    started = time.perf_counter()
    find_fluidsynth()
    font = find_soundfont(soundfont)
    pieces = corpus_pieces(composer)
    if not pieces:
        raise SourceMissingError(f"music21's corpus has no scores by {composer!r}")
    out_dir = prepare_output_folder(out)
    budget = audio_budget_bytes(budget_mib)
    items: list[dict] = []
    total_seconds, written = 0.0, 0
    timings = {"midi": 0.0, "render": 0.0, "process": 0.0}
    with tempfile.TemporaryDirectory(prefix="studio-music-") as tmp:
        for index, score_path in enumerate(pieces):
            if total_seconds >= minutes * 60:
                break
            piece_id = score_path.name.rsplit(".", 1)[0] if score_path.suffix != ".mxl" else score_path.stem
            program = int(programs[index % len(programs)])
            midi, wav = Path(tmp) / f"{piece_id}.mid", Path(tmp) / f"{piece_id}.wav"
            t0 = time.perf_counter()
            try:
                write_midi(score_path, midi, program)
            except Exception as exc:  # music21 raises many kinds on odd scores; skip the piece, keep going
                log.warning("skipping %s: music21 could not convert it (%s)", score_path.name, exc)
                continue
            t1 = time.perf_counter()
            render(midi, wav, font, rate)
            t2 = time.perf_counter()
            audio, sr = files.load(wav, mono=True)
            audio = processing.clean_up(audio, sr, rate, bits)
            target = out_dir / AUDIO_DIR / f"{piece_id}.flac"
            size = write_flac(target, audio, rate)
            timings["midi"] += t1 - t0
            timings["render"] += t2 - t1
            timings["process"] += time.perf_counter() - t2
            if budget is not None and written + size > budget:
                target.unlink()
                log.info("size budget of %.1f MiB reached", budget_mib)
                break
            seconds = audio.size / rate
            written += size
            total_seconds += seconds
            items.append({
                "id": piece_id, "path": f"{AUDIO_DIR}/{piece_id}.flac", "split": split_of_index(index),
                "samples": int(audio.size), "seconds": round(seconds, 4), "program": program,
                "score": f"music21 corpus: {composer}/{score_path.name}",
            })
            if progress is not None:
                progress(len(items), total_seconds)
    document = {
        "name": NAME,
        "kind": "music",
        "sample_rate": int(rate),
        "source": {
            "corpus": f"music21 {_music21().__version__}: {composer}", "soundfont": str(font),
            "renderer": "fluidsynth", "programs": [int(p) for p in programs],
        },
        "licence": "scores: music21 corpus (public-domain works); sounds: the soundfont's licence "
        "(TimGM6mb GPL-2, FluidR3_GM MIT)",
        "preparation": {
            "trim_range_db": processing.DEFAULT_TRIM_RANGE_DB, "active_level_dbfs": processing.DEFAULT_TARGET_DBFS,
            "peak_limit_dbfs": processing.DEFAULT_PEAK_DBFS, "bits": int(bits), "format": "FLAC 16-bit mono",
            "minutes": minutes, "budget_mib": budget_mib, "timings_s": {k: round(v, 2) for k, v in timings.items()},
        },
        "held_out": {"rule": "by position in name order: index % 10 == 9 → test, == 4 → validation"},
        "items": items,
        "summary": summarise(items),
    }
    write_final_manifest(out_dir, document)
    wall = time.perf_counter() - started
    return PrepareReport(
        out=out_dir, splits=document["summary"], bytes=document["bytes"], wall_seconds=wall,
        notes=[
            f"{len(items)} pieces, {total_seconds / 60:.1f} min at {rate} Hz with {font.name}",
            "time: MIDI {midi:.1f} s, fluidsynth {render:.1f} s, trim/level/FLAC {process:.1f} s".format(**timings),
        ],
    )
