"""Where the studio keeps user files, and how it writes them safely.

Torch-free on purpose: checkpoints, the model catalogue and voice files all use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

APP_DIR_NAME = "waveform-studio"


def user_data_dir(kind: str, env_var: str) -> Path:
    """The user's folder for ``kind`` ("models", "voices"): ``$env_var`` if set, else
    ``$XDG_DATA_HOME/waveform-studio/KIND`` (``~/.local/share/…``). It may not exist yet."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / APP_DIR_NAME / kind


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part
    (temporary file in the same folder, fsync, rename, fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _new_file_mode() -> int:
    """0o666 less the process umask (mkstemp makes 0o600 files; saved files are shared like any file)."""
    umask = 0o022
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
