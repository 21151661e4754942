"""The compare lane: the other take of a pair (a conversion and what it was made from) shown under the
main views, on the same stretch of time, so that a result can be looked at beside its source.

``pair_partner`` picks what the lane shows for the take in the main views: a take's source, or, while
A/B shows the source, the take made from it. ``CompareLane`` holds a second ``TimelineView`` (its own
spectrogram thread) and follows the main view's time range and playhead from the window's GUI timer
(``follow``), shifted by where the pair's starts lie apart (a conversion of a selection starts at the
selection's start in its source). Clicking in the lane seeks the main take at the same moment. GUI
thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from studio.ui.takes import Take
from studio.ui.views.timeline import TimelineView
from studio.workers.spectrum import SpectrogramSettings


def pair_partner(current: Take | None, selected: Take | None) -> tuple[Take, float] | None:
    """What the compare lane shows while ``current`` is in the main views and ``selected`` is the
    takes list's selection: (partner, offset_s), where partner time = main time + offset_s; None when
    ``current`` is not one of a pair."""
    if current is None:
        return None
    if current.source is not None:
        return current.source, current.source_offset_s
    if selected is not None and selected.source is current:  # A/B is showing the source of the selection
        return selected, -selected.source_offset_s
    return None


class CompareLane(QWidget):
    """A caption and a ``TimelineView`` of the partner take; hidden while there is none.

    Signals: ``seekRequested(t_s)`` — a click in the lane, in the main take's time.
    """

    seekRequested = Signal(float)

    def __init__(self, settings: SpectrogramSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = QLabel("")
        self.caption.setObjectName("dim")
        self.timeline = TimelineView(settings=settings)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.caption)
        layout.addWidget(self.timeline, 1)
        self.timeline.seekRequested.connect(self._on_seek)  # a method, not a lambda: no cycle through self
        self._take: Take | None = None
        self._offset_s = 0.0
        self._followed: tuple[float, float] | None = None
        self.hide()

    @property
    def take(self) -> Take | None:
        """The take the lane shows (None while hidden)."""
        return self._take

    @property
    def offset_s(self) -> float:
        return self._offset_s

    def show_partner(self, partner: tuple[Take, float] | None, main_name: str = "") -> None:
        """Show ``partner`` (a ``pair_partner`` result) under the main views, or hide the lane (None)."""
        if partner is None:
            self._take = None
            self.timeline.set_track(None)
            self.hide()
            return
        take, offset = partner
        if take is not self._take:
            self._take = take
            self.timeline.set_track(take.track)
        self._offset_s = float(offset)
        self._followed = None
        relation = "source of" if take.source is None else "made from"
        where = f", from {offset:.3f} s" if offset > 0 else ""
        self.caption.setText(f"  compare · {take.name}  ({relation} {main_name}{where})")
        self.show()

    def follow(self, main: TimelineView) -> None:
        """Put the lane on the main view's stretch of time and playhead (the window's GUI timer)."""
        if self._take is None:
            return
        x0, x1 = main.view_range()
        wanted = (x0 + self._offset_s, x1 + self._offset_s)
        if wanted != self._followed:
            self.timeline.set_view_range(*wanted)
            self._followed = wanted
        self.timeline.set_playhead(main.playhead + self._offset_s, follow=False)

    def _on_seek(self, t: float) -> None:
        self.seekRequested.emit(t - self._offset_s)

    def shutdown(self) -> None:
        """Stop the lane's views (its timers and spectrogram thread) and let go of its take."""
        self._take = None
        self.timeline.set_track(None)
        self.timeline.shutdown()
