"""The start / Cancel pair of the panels that run long work (convert, generate, train). GUI thread only."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QPushButton


def run_buttons(text: str) -> tuple[QPushButton, QPushButton, QHBoxLayout]:
    """A primary button labelled ``text`` (the theme's accent style), a "Cancel" button that starts
    disabled (the panel enables it while its work runs), and the row holding them, where the primary
    button takes the spare width. Returns ``(primary, cancel, row)``."""
    primary = QPushButton(text)
    primary.setObjectName("primary")
    cancel = QPushButton("Cancel")
    cancel.setEnabled(False)
    row = QHBoxLayout()
    row.addWidget(primary, 1)
    row.addWidget(cancel)
    return primary, cancel, row
