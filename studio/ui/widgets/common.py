"""Small widget makers the panels share: a monospace readout label, a quiet progress bar, and refilling
a combo box without emitting its signals. GUI thread only, like every widget."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar

from studio.ui import theme


def readout_label(text: str = "", *, wrap: bool = False, point_size: int | None = None) -> QLabel:
    """A monospace label styled as a readout (numbers that change while work runs)."""
    label = QLabel(text)
    label.setFont(theme.monospace_font(point_size))
    label.setObjectName("readout")
    label.setWordWrap(wrap)
    return label


def quiet_progress(maximum: int) -> QProgressBar:
    """A progress bar from 0 to ``maximum`` with no percentage text (the readout beside it says more)."""
    bar = QProgressBar()
    bar.setRange(0, maximum)
    bar.setValue(0)
    bar.setTextVisible(False)
    return bar


def set_combo_items(combo: QComboBox, names: list[str], current: str) -> None:
    """Replace ``combo``'s items with ``names`` and select ``current`` when listed, emitting nothing."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)


def select_combo_data(combo: QComboBox, data: object) -> bool:
    """Make the item whose data is ``data`` current; False (and nothing changed) when there is none."""
    index = combo.findData(data)
    if index < 0:
        return False
    combo.setCurrentIndex(index)
    return True
