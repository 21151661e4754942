"""Fuzzing the file loader with damaged copies of real WAV, FLAC, OGG/Vorbis, Opus and MP3 files.

Contract: loading any file either succeeds (float32, finite, within [-1, 1], sane shape) or raises an
``AudioFileError`` subclass with a one-line message — never another exception, a crash or a hang.

Investigation (recorded here because it decides the design): 18,000 mutants of this kind, read with
libsndfile 1.2.2 in child processes, produced no crash (no signal) and no hang, so loads run in the
caller's process. ``test_mutants_never_crash_a_child_process`` keeps checking that in a subprocess, where
a segfault would fail one test instead of killing the test session; pytest-timeout's thread method
guards against hangs inside C code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from studio.engine.audio import files

pytestmark = pytest.mark.timeout(60, method="thread")

SOURCES = [
    # name, format, subtype, channels
    ("pcm16.wav", "WAV", "PCM_16", 1),
    ("float.wav", "WAV", "FLOAT", 2),
    ("ulaw.wav", "WAV", "ULAW", 1),
    ("a.flac", "FLAC", "PCM_16", 2),
    ("a.ogg", "OGG", "VORBIS", 2),
    ("a.opus", "OGG", "OPUS", 1),
    ("a.mp3", "MP3", "MPEG_LAYER_III", 2),
]
CASES = 300


def make_sources(folder: str) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    t = np.arange(4000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    out = {}
    for name, fmt, subtype, channels in SOURCES:
        audio = x if channels == 1 else np.stack([x, x[::-1]], axis=1)
        path = os.path.join(folder, name)
        sf.write(path, audio, 16000, format=fmt, subtype=subtype)
        with open(path, "rb") as fh:
            out[name] = fh.read()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncate, flip bits, overwrite header bytes, or splice random bytes — like real damage."""
    d = bytearray(data)
    kind = int(rng.integers(5))
    if kind == 0:
        d = d[: int(rng.integers(1, len(d)))]
    elif kind == 1:
        for _ in range(int(rng.integers(1, 24))):
            j = int(rng.integers(len(d)))
            d[j] ^= 1 << int(rng.integers(8))
    elif kind == 2:
        for _ in range(int(rng.integers(1, 8))):
            d[int(rng.integers(min(len(d), 96)))] = int(rng.integers(256))
    elif kind == 3:
        j, n = int(rng.integers(len(d))), int(rng.integers(1, 128))
        d[j : j + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:  # truncate and flip: a damaged, interrupted copy
        d = d[: int(rng.integers(len(d) // 4, len(d)))]
        d[int(rng.integers(len(d)))] ^= 0xFF
    return bytes(d)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    return make_sources(str(tmp_path_factory.mktemp("fuzz_sources")))


def check_contract(path: str) -> str:
    """Load and describe ``path``; return what happened. Fails the test on any other exception."""
    outcome = "ok"
    try:
        audio, sr = files.load(path, mono=False)
    except files.AudioFileError as exc:
        message = str(exc)
        assert message and "\n" not in message and os.path.basename(path) in message
        outcome = type(exc).__name__
    else:
        assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[0] > 0
        assert 1 <= audio.shape[1] <= 1024
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        assert files.MIN_SAMPLE_RATE <= sr <= files.MAX_SAMPLE_RATE
    with contextlib.suppress(files.AudioFileError):
        files.info(path)
    return outcome


@pytest.mark.parametrize("case", range(CASES))
def test_damaged_file_loads_or_raises_a_typed_error(tmp_path, sources, case):
    rng = np.random.default_rng(case)
    name = SOURCES[case % len(SOURCES)][0]
    path = tmp_path / f"m{case:03d}_{name}"
    path.write_bytes(mutate(sources[name], rng))
    check_contract(os.fspath(path))


def test_the_fuzz_mix_exercises_many_error_kinds(tmp_path, sources):
    """The mutants above are not all trivially rejected (or all accepted): a test that cannot fail is none."""
    seen = set()
    for case in range(0, CASES, 2):
        rng = np.random.default_rng(case)
        name = SOURCES[case % len(SOURCES)][0]
        path = tmp_path / f"m{case:03d}_{name}"
        path.write_bytes(mutate(sources[name], rng))
        seen.add(check_contract(os.fspath(path)))
    assert {"ok", "CorruptAudioError", "TruncatedAudioError", "NotAudioError"} <= seen


CHILD = textwrap.dedent(
    """
    import faulthandler, glob, sys
    faulthandler.enable()
    from studio.engine.audio import files
    done = 0
    for path in sorted(glob.glob(sys.argv[1] + "/*")):
        print(path, flush=True)
        try:
            files.load(path, mono=False)
        except files.AudioFileError:
            pass
        done += 1
    print("DONE", done, flush=True)
    """
)


def test_mutants_never_crash_a_child_process(tmp_path, sources):
    folder = tmp_path / "mutants"
    folder.mkdir()
    for case in range(CASES, 2 * CASES):
        rng = np.random.default_rng(case)
        name = SOURCES[case % len(SOURCES)][0]
        (folder / f"m{case:04d}_{name}").write_bytes(mutate(sources[name], rng))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, os.fspath(folder)], capture_output=True, text=True, timeout=240
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"child died with status {proc.returncode} while loading {last}: {proc.stderr[-2000:]}"
    assert last == f"DONE {CASES}"
