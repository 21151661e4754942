"""Takes: the pieces of audio a session holds (opened files, recordings, generations), and their list.

A ``Take`` owns an ``AudioTrack`` (GUI thread only). ``source`` links a generated take to what it was
made from, for A/B listening. Generations start unsaved (``saved`` False) and the window asks before
losing them; files and recordings are already on disk.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from studio.ui.timefmt import format_time
from studio.ui.views.distribution import DistributionTrack
from studio.ui.views.track import AudioTrack

_ids = itertools.count(1)
KINDS = ("file", "recording", "generation", "conversion")


@dataclass(eq=False)
class Take:
    """One piece of audio. kind: one of ``KINDS``; path: where it lives on disk.

    source: the take this one was made from (A/B); source_offset_s: where this take's start lies in
    the source (a conversion of a selection starts at the selection's start). distribution: the
    predicted distribution a WaveNet/WaveRNN generation reported (``views.distribution.DistributionTrack``)
    when the Generate panel asked for it, else None.
    """

    name: str
    track: AudioTrack
    kind: str
    path: str | None = None
    saved: bool = True
    source: Take | None = None
    source_offset_s: float = 0.0
    description: str = ""
    distribution: DistributionTrack | None = None
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def sample_rate(self) -> int:
        return self.track.sample_rate

    def label(self) -> str:
        mark = "" if self.saved else "  ● unsaved"
        state = "" if self.track.complete else "  …"
        return f"{self.name}  ·  {format_time(self.track.duration_s)}  ·  {self.sample_rate} Hz{state}{mark}"


class TakesPanel(QWidget):
    """The list of takes. Emits ``chosen(Take)``, ``saveRequested(Take)``, ``removeRequested(Take)``,
    ``abToggled(bool)``."""

    chosen = Signal(object)
    saveRequested = Signal(object)
    removeRequested = Signal(object)
    abToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.ab_button = QPushButton("A/B")
        self.ab_button.setCheckable(True)
        self.ab_button.setEnabled(False)
        self.ab_button.setToolTip("Switch between a generated or converted take and the audio it was made from")
        self.save_button = QPushButton("Save…")
        self.remove_button = QPushButton("Remove")
        buttons = QHBoxLayout()
        buttons.addWidget(self.ab_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._takes: dict[int, Take] = {}
        self.list.currentItemChanged.connect(self._on_current)
        self.save_button.clicked.connect(lambda: self._emit_for_current(self.saveRequested))
        self.remove_button.clicked.connect(lambda: self._emit_for_current(self.removeRequested))
        self.ab_button.toggled.connect(self.abToggled)

    def takes(self) -> list[Take]:
        return [self._takes[self.list.item(i).data(Qt.ItemDataRole.UserRole)] for i in range(self.list.count())]

    def add(self, take: Take, select: bool = True) -> None:
        item = QListWidgetItem(take.label())
        item.setData(Qt.ItemDataRole.UserRole, take.id)
        self._takes[take.id] = take
        self.list.addItem(item)
        if select:
            self.list.blockSignals(True)
            self.list.setCurrentItem(item)
            self.list.blockSignals(False)
            self._update_buttons(take)

    def remove(self, take: Take) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == take.id:
                self.list.takeItem(i)
                break
        self._takes.pop(take.id, None)

    def refresh(self) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            take = self._takes[item.data(Qt.ItemDataRole.UserRole)]
            if item.text() != take.label():
                item.setText(take.label())

    def select(self, take: Take) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == take.id:
                self.list.blockSignals(True)
                self.list.setCurrentRow(i)
                self.list.blockSignals(False)
                self._update_buttons(take)
                return

    def current(self) -> Take | None:
        item = self.list.currentItem()
        return None if item is None else self._takes.get(item.data(Qt.ItemDataRole.UserRole))

    def _on_current(self, item, _prev=None) -> None:
        take = None if item is None else self._takes.get(item.data(Qt.ItemDataRole.UserRole))
        self._update_buttons(take)
        if take is not None:
            self.chosen.emit(take)

    def _update_buttons(self, take: Take | None) -> None:
        self.ab_button.blockSignals(True)
        self.ab_button.setChecked(False)
        self.ab_button.blockSignals(False)
        self.ab_button.setEnabled(take is not None and take.source is not None)
        self.save_button.setEnabled(take is not None)
        self.remove_button.setEnabled(take is not None)

    def _emit_for_current(self, signal) -> None:
        take = self.current()
        if take is not None:
            signal.emit(take)
