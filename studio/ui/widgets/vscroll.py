"""A scroll area for tall dock panels: scrolls vertically, never sideways, and is never narrower than its panel.

``QScrollArea`` reports a tiny minimum width of its own, so a dock holding one could be squeezed
narrower than the panel inside, which is then clipped. This one asks the panel each time (the
panel's minimum width can grow once the style and fonts are applied).
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QScrollArea, QWidget


class VerticalScrollArea(QScrollArea):
    def __init__(self, widget: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(widget)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        inner = self.widget().minimumSizeHint() if self.widget() is not None else QSize(0, 0)
        return QSize(inner.width() + self.verticalScrollBar().sizeHint().width(), super().minimumSizeHint().height())
