"""Imports every model family module so that each registers itself in ``base.FAMILIES``."""

import importlib

FAMILY_MODULES = ("wavenet", "wavernn", "waveglow")

for _name in FAMILY_MODULES:
    try:
        importlib.import_module(f"studio.engine.models.{_name}")
    except ModuleNotFoundError as exc:  # a family still being written in this checkout
        if exc.name != f"studio.engine.models.{_name}":
            raise
