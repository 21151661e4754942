"""Building and loading the native (C) step loops of the autoregressive families.

At first use a family's C file is compiled with the system C compiler (``$CC``, ``cc``, ``gcc`` or
``clang``; ``-O3 -march=native``, ``-I`` the source's folder, about a second) into ``~/.cache/waveform-studio/native/``
(or ``$WAVEFORM_STUDIO_CACHE/native``), named by a hash of the source, of every header it includes with
``#include "..."`` (their content, followed recursively: ``native_kernels.h``), of the flags and of the
machine, and reused afterwards without a compiler. An edited header therefore names a new library. When no compiler is found, the build fails, or ``STUDIO_NO_NATIVE=1`` is
set, ``load_library`` returns None with one log line and the family uses its torch step loop, which
computes the same function (tests/test_fastpaths.py).

Threads: ``load_library`` may compile (seconds); callers hold their own lock and cache its result.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ENV_DISABLE = "STUDIO_NO_NATIVE"
"""Set to anything but "" / "0" to never build or use the native step loops."""
CFLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=gnu11", "-pthread")
BUILD_TIMEOUT_S = 120.0

_QUOTED_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.MULTILINE)


def native_disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "") not in ("", "0")


def cache_dir() -> Path:
    root = os.environ.get("WAVEFORM_STUDIO_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "waveform-studio"
    return base / "native"


def find_compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def included_headers(source: Path) -> list[Path]:
    """The headers ``source`` includes with ``#include "name"``, directly or through another such header, in
    first-seen order, resolved as the compiler does with ``-I source.parent``: next to the including file,
    then in the source's folder. A name found in neither place is returned as it would lie next to the
    including file (it does not exist: the build will fail and say so). ``<system>`` headers are not listed:
    they belong to the compiler, which the flags and machine in the key stand for."""
    found: list[Path] = []
    pending = [source]
    while pending:
        current = pending.pop(0)
        try:
            text = current.read_bytes()
        except OSError:
            continue
        for match in _QUOTED_INCLUDE.finditer(text):
            name = match.group(1).decode("utf-8", "replace")
            header = current.parent / name
            if not header.is_file() and (source.parent / name).is_file():
                header = source.parent / name
            header = header.resolve()
            if header not in found and header != source.resolve():
                found.append(header)
                pending.append(header)
    return found


def cached_library_path(source: Path) -> Path:
    """Where the library for this source (and the content of every header it includes), flags and machine
    lives (it may not exist yet)."""
    key = hashlib.sha256(source.read_bytes() + " ".join(CFLAGS).encode() + platform.node().encode())
    key.update(platform.machine().encode() + platform.processor().encode())
    for header in included_headers(source):
        key.update(b"\0" + header.name.encode() + b"\0")
        try:
            key.update(header.read_bytes())
        except OSError:
            key.update(b"(missing)")
    return cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"


def build(compiler: str, source: Path, target: Path, label: str) -> Path:
    """Compile ``source`` into ``target`` (atomic rename) and return it; RuntimeError with the compiler's
    message when it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the native %s step loop (once, cached in %s)", label, target.parent)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [compiler, *CFLAGS, "-I", str(source.parent), "-o", str(out), str(source)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        os.replace(out, target)
    log.info("native %s step loop built in %.1f s", label, time.perf_counter() - started)
    return target


def _open(target: Path, configure: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(target))
    configure(lib)
    return lib


def load_library(label: str, source: Path, configure: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL | None:
    """Build (if needed) and load the library for ``source``; ``configure`` declares its functions'
    argument and result types. None, logged, when switched off, without a compiler or when it fails.

    A cached library that does not load (truncated by a full disk, built by another compiler, missing a
    symbol of the current source) is deleted and rebuilt once; if the rebuilt one does not load either,
    the warning names the file and the way out (``STUDIO_NO_NATIVE=1``)."""
    if native_disabled():
        log.info("native %s step loop switched off (%s=%s): using the torch step loop",
                 label, ENV_DISABLE, os.environ.get(ENV_DISABLE))
        return None
    target = cached_library_path(source)
    stale = None
    if target.exists():
        try:
            return _open(target, configure)
        except (OSError, AttributeError) as exc:
            stale = exc
            log.warning("cached native %s step loop %s does not load (%s): rebuilding it", label, target, exc)
            with contextlib.suppress(OSError):
                target.unlink()
    compiler = find_compiler()
    if compiler is None:
        why = f"the cached library did not load ({stale}) and " if stale else ""
        log.warning("%sno C compiler found (cc/gcc/clang): %s uses the slower torch step loop", why, label)
        return None
    try:
        built = build(compiler, source, target, label)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("native %s step loop unavailable (%s): using the torch step loop", label, exc)
        return None
    try:
        return _open(built, configure)
    except (OSError, AttributeError) as exc:
        log.warning(
            "native %s step loop unavailable: %s was just built with %s but does not load (%s); using the torch "
            "step loop (check the compiler, or set %s=1 to skip the build)", label, built, compiler, exc, ENV_DISABLE,
        )
        return None
