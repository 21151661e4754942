"""The optional ``eval`` extra: import its packages with a message that says how to install them."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

INSTALL_HINT = "pip install -e .[eval]"


class MissingExtraError(ImportError):
    """A metric needs a package of the ``eval`` extra that is not installed."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (needed for ``what``), or raise ``MissingExtraError`` naming the install command.

    pyworld and pysptk import ``pkg_resources`` at import time, which setuptools 81 removed; the extra
    pins ``setuptools<81`` for them, and the error says so when that is the cause.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources' deprecation warning on import
            return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        if missing == "pkg_resources":
            raise MissingExtraError(
                f"{what} needs {module}, which imports pkg_resources: install setuptools<81 "
                f"({INSTALL_HINT} does)"
            ) from exc
        raise MissingExtraError(
            f"{what} needs the Python package '{missing}' (the optional eval extra): {INSTALL_HINT}"
        ) from exc
