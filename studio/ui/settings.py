"""Where the studio keeps its settings (QSettings), and how tests redirect them.

Normally the platform's per-user store for organisation ``WaveformStudio``, application ``studio``.
With ``$STUDIO_SETTINGS_DIR`` set, an INI file in that folder is used instead — tests point it at a
temporary directory so they never read or write a person's real settings.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

ORGANIZATION = "WaveformStudio"
ORGANIZATION_DOMAIN = "waveform-studio.local"
APPLICATION = "studio"
SETTINGS_DIR_ENV = "STUDIO_SETTINGS_DIR"
MAX_RECENT_FILES = 10


def make_settings() -> QSettings:
    folder = os.environ.get(SETTINGS_DIR_ENV)
    if folder:
        os.makedirs(folder, exist_ok=True)
        return QSettings(os.path.join(folder, "studio.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def read_str(settings: QSettings, key: str, default: str = "") -> str:
    value = settings.value(key, default)
    return default if value is None else str(value)


def read_int(settings: QSettings, key: str, default: int) -> int:
    try:
        return int(settings.value(key, default))
    except (TypeError, ValueError):
        return default


def read_float(settings: QSettings, key: str, default: float) -> float:
    try:
        return float(settings.value(key, default))
    except (TypeError, ValueError):
        return default


def read_bool(settings: QSettings, key: str, default: bool) -> bool:
    value = settings.value(key, default)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def read_list(settings: QSettings, key: str) -> list[str]:
    value = settings.value(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]
