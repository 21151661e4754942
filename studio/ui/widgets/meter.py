"""A horizontal level meter: RMS bar, peak bar, peak-hold tick and a clip lamp (click to reset).

Fed from the GUI timer with ``set_levels`` (dBFS values, e.g. from ``engine.audio.levels.Levels``);
paints only when the reading changed.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui import theme

FLOOR_DB = -60.0
WARN_DB = -6.0


class LevelMeter(QWidget):
    """Level meter widget. ``clipReset`` is emitted when the user clicks the clip lamp."""

    clipReset = Signal()

    def __init__(self, parent: QWidget | None = None, floor_db: float = FLOOR_DB) -> None:
        super().__init__(parent)
        self.floor_db = floor_db
        self.peak_db = self.rms_db = self.hold_db = floor_db
        self.clipped = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Level (dBFS): bar = RMS, bright = peak, tick = peak hold; red lamp = clipped (click to reset)")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(160, 14)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(60, 12)

    def set_levels(self, peak_db: float, rms_db: float, hold_db: float, clipped: bool) -> None:
        reading = (round(peak_db, 1), round(rms_db, 1), round(hold_db, 1), bool(clipped))
        if reading == (round(self.peak_db, 1), round(self.rms_db, 1), round(self.hold_db, 1), self.clipped):
            return
        self.peak_db, self.rms_db, self.hold_db, self.clipped = peak_db, rms_db, hold_db, bool(clipped)
        self.update()

    def _x(self, db: float, width: float) -> float:
        frac = (max(self.floor_db, min(0.0, db)) - self.floor_db) / -self.floor_db
        return frac * width

    def mousePressEvent(self, event):  # noqa: N802 (Qt naming)
        if event.position().x() >= self.width() - self.height() - 2:
            self.clipped = False
            self.update()
            self.clipReset.emit()
        super().mousePressEvent(event)

    def paintEvent(self, event):  # noqa: N802 (Qt naming)
        p = QPainter(self)
        h = self.height()
        lamp = h
        w = max(1.0, self.width() - lamp - 4.0)
        p.fillRect(QRectF(0, 0, w, h), QColor(theme.BASE))
        warn_x = self._x(WARN_DB, w)
        # peak (dim) then rms (bright) bars; the part above WARN_DB turns amber
        for db, alpha in ((self.peak_db, 110), (self.rms_db, 255)):
            x = self._x(db, w)
            c = QColor(theme.ACCENT)
            c.setAlpha(alpha)
            p.fillRect(QRectF(0, 2, min(x, warn_x), h - 4), c)
            if x > warn_x:
                a = QColor(theme.WARNING)
                a.setAlpha(alpha)
                p.fillRect(QRectF(warn_x, 2, x - warn_x, h - 4), a)
        # scale ticks every 6 dB
        p.setPen(QColor("#2d3136"))
        db = self.floor_db
        while db < 0:
            x = self._x(db, w)
            p.drawLine(int(x), 0, int(x), 2)
            p.drawLine(int(x), h - 2, int(x), h)
            db += 6.0
        if self.hold_db > self.floor_db:
            x = self._x(self.hold_db, w)
            p.fillRect(QRectF(max(0.0, x - 1.5), 0, 2, h), QColor("#f4f6f8"))
        p.fillRect(QRectF(w + 4, 0, lamp, h), QColor(theme.CLIP if self.clipped else "#2a2e33"))
        p.end()
