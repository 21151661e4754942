"""The native build cache: a library is named by its source *and* the headers that source includes.

Real files in temporary folders and, where a C compiler is present, real builds (tiny sources, well under
a second each). The studio's own sources are only ever read here; edits go to temporary copies.
"""

from __future__ import annotations

import ctypes
import fnmatch
import shutil
import tomllib
from pathlib import Path

import pytest

from studio.engine.models import native_build
from studio.engine.models import wavenet_native as wn_native
from studio.engine.models import wavernn_native as rnn_native

MODELS = wn_native.SOURCE.parent
REPO = MODELS.parents[2]
SHARED_HEADER = MODELS / "native_kernels.h"


def compiler_or_skip() -> str:
    compiler = native_build.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler on this machine")
    return compiler


def copy_of_the_sources(folder: Path) -> dict[str, Path]:
    """The two step loops and their shared header, copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {p.name: Path(shutil.copy2(p, folder)) for p in (wn_native.SOURCE, rnn_native.SOURCE, SHARED_HEADER)}


def declare_value(lib: ctypes.CDLL) -> None:
    lib.value.restype = ctypes.c_int
    lib.value.argtypes = []


def test_both_step_loops_include_the_shared_header():
    for source in (wn_native.SOURCE, rnn_native.SOURCE):
        assert native_build.included_headers(source) == [SHARED_HEADER.resolve()]


def test_included_headers_follows_quoted_includes_through_headers_and_skips_system_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.c").write_text(
        '#include <stdint.h>\n#include "sub/a.h"\n  #  include "b.h"\n// #include "c.h" is only a comment\n'
    )
    (tmp_path / "sub" / "a.h").write_text('#include "b.h"\n#include "sub_only.h"\n')  # b.h: via -I
    (tmp_path / "sub" / "sub_only.h").write_text("#define SUB_ONLY 1\n")
    (tmp_path / "b.h").write_text('#include "sub/a.h"\n')  # a cycle ends at the first repeat
    got = native_build.included_headers(tmp_path / "main.c")
    assert got == [(tmp_path / n).resolve() for n in ("sub/a.h", "b.h", "sub/sub_only.h")]


def test_editing_a_header_names_a_new_library_for_every_source_that_includes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path / "cache"))
    files = copy_of_the_sources(tmp_path / "src")
    sources = [files["wavenet_native.c"], files["wavernn_native.c"]]
    before = [native_build.cached_library_path(s) for s in sources]
    assert before == [native_build.cached_library_path(s) for s in sources]  # stable while nothing changes
    assert before[0] != before[1] and all(p.parent == tmp_path / "cache" / "native" for p in before)

    header = files["native_kernels.h"]
    header.write_text(header.read_text() + "\n/* an edit that changes no code still names a new build */\n")
    after = [native_build.cached_library_path(s) for s in sources]
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert [p.name.split("-")[0] for p in after] == ["wavenet_native", "wavernn_native"]

    (tmp_path / "src" / "unrelated.h").write_text("#define NOT_INCLUDED 1\n")  # included by no source
    assert [native_build.cached_library_path(s) for s in sources] == after
    header.unlink()  # a missing header is a different key too (the build then fails and says so)
    assert all(native_build.cached_library_path(s) not in (*before, *after) for s in sources)


def test_an_edited_header_is_rebuilt_not_served_from_the_stale_cache(tmp_path, monkeypatch):
    """End to end with a real compiler: the value a header defines reaches the loaded library, and a new
    value after an edit (the old library stays cached under its own name). The header sits in the source's
    folder but is included from a sub-folder's header, so it is found only through ``-I`` that folder."""
    compiler_or_skip()
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "src" / "inner").mkdir(parents=True)
    source = tmp_path / "src" / "probe.c"
    source.write_text('#include "inner/outer.h"\nint value(void) { return PROBE_VALUE; }\n')
    (tmp_path / "src" / "inner" / "outer.h").write_text('#include "values.h"\n')
    values = tmp_path / "src" / "values.h"
    values.write_text("#define PROBE_VALUE 7\n")

    first = native_build.load_library("probe", source, declare_value)
    assert first is not None and first.value() == 7
    first_path = native_build.cached_library_path(source)
    assert first_path.exists()

    values.write_text("#define PROBE_VALUE 11\n")
    second_path = native_build.cached_library_path(source)
    assert second_path != first_path and not second_path.exists()
    second = native_build.load_library("probe", source, declare_value)
    assert second is not None and second.value() == 11
    assert second_path.exists() and first_path.exists()
    assert len(list((tmp_path / "cache" / "native").glob("probe-*.so"))) == 2


def test_a_copy_of_the_real_step_loops_builds_with_its_header(tmp_path, monkeypatch):
    compiler_or_skip()
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path / "cache"))
    files = copy_of_the_sources(tmp_path / "src")
    wn = native_build.load_library("WaveNet", files["wavenet_native.c"], wn_native._declare)
    rnn = native_build.load_library("WaveRNN", files["wavernn_native.c"], rnn_native._declare)
    assert wn is not None and rnn is not None
    assert hasattr(wn, "wavenet_fold_steps") and hasattr(rnn, "wavernn_steps")


def test_the_package_data_ships_every_native_source_and_the_headers_they_include():
    """An installed studio builds its step loops from the files next to it: each .c and every header it
    includes must match a package-data pattern of pyproject.toml (paths relative to the package)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["studio"]
    package = REPO / "studio"
    shipped = []
    for source in (wn_native.SOURCE, rnn_native.SOURCE):
        for path in (source, *native_build.included_headers(source)):
            relative = path.resolve().relative_to(package.resolve()).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not in package-data"
            shipped.append(relative)
    assert "engine/models/native_kernels.h" in shipped
