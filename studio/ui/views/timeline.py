"""The stacked, time-aligned views: waveform over spectrogram, sharing one time axis.

Everything here runs on the GUI thread. Data arrives by ``set_track`` (an ``AudioTrack`` that may
grow while shown) and ``set_playhead``; a 30 Hz QTimer repaints what changed — never per audio block.

Mouse: left-drag selects a time range, click seeks, wheel zooms time, shift/middle-drag pans.
Keys (when focused): +/- zoom, Left/Right scroll, F fit, Escape clears the selection.
Long audio: the waveform draws from the track's min/max pyramid, clipped to the view; the spectrogram
keeps a coarse overview of the whole track (≤ ``OVERVIEW_COLUMNS`` columns) and, when zoomed in on a long
track, a detail image of the visible range — both computed by ``SpectrogramService`` off the GUI thread.
While a track grows, the timer asks that service for the overview columns of the samples that arrived
(one job of at most ``LIVE_COLUMNS_PER_JOB`` columns in flight) and appends each image it returns.
Between the two, a WaveNet/WaveRNN generation can show its predicted distribution as a heat-map row
(``set_distribution``, see ``views.distribution``), x-linked and repainted from the same timer.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from studio.ui import theme
from studio.ui.timefmt import amplitude_db, format_db, format_hz, format_time
from studio.ui.views.axes import FrequencyAxis, TimeAxis
from studio.ui.views.distribution import DistributionStrip, DistributionTrack
from studio.ui.views.track import AudioTrack
from studio.workers.spectrogram import SpectrogramJob, SpectrogramResult, SpectrogramService
from studio.workers.spectrum import (
    SpectrogramSettings,
    axis_range,
    column_count,
    from_axis,
    to_axis,
)

log = logging.getLogger(__name__)

REPAINT_HZ = 30
OVERVIEW_COLUMNS = 4096  # the overview is decimated (hop doubled) beyond twice this
DETAIL_COLUMNS = 2048
LIVE_COLUMNS_PER_JOB = 256  # overview columns of arriving audio asked of the worker at once
DETAIL_DELAY_MS = 120


class TimeViewBox(pg.ViewBox):
    """A ViewBox where left-drag selects time and a click seeks; wheel zooms x only."""

    sigSelecting = Signal(float, float, bool)  # start s, end s, finished
    sigClicked = Signal(float)  # time s

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=True, y=False)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        mods = ev.modifiers()
        if ev.button() == Qt.MouseButton.LeftButton and not mods & (
            Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
        ):
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos()).x()
            b = self.mapSceneToView(ev.scenePos()).x()
            self.sigSelecting.emit(min(a, b), max(a, b), bool(ev.isFinish()))
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            # shift/ctrl-drag pans, like the middle button
            ev.accept()
            delta = self.mapSceneToView(ev.lastScenePos()).x() - self.mapSceneToView(ev.scenePos()).x()
            self.translateBy(x=delta)
            self.sigRangeChangedManually.emit(self.state["mouseEnabled"])
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigClicked.emit(self.mapSceneToView(ev.scenePos()).x())
            return
        super().mouseClickEvent(ev)


class TimelineView(QWidget):
    """Waveform + spectrogram of one track, with selection, playhead, zoom and hover readout.

    Signals: ``selectionChanged(start_s, end_s)`` (equal values = no selection), ``seekRequested(t_s)``,
    ``settingsChanged()`` when the spectrogram settings change.
    """

    selectionChanged = Signal(float, float)
    seekRequested = Signal(float)
    settingsChanged = Signal()

    def __init__(self, parent: QWidget | None = None, settings: SpectrogramSettings | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._settings = settings or SpectrogramSettings()
        self._track: AudioTrack | None = None
        self._selection: tuple[float, float] | None = None
        self._playhead = 0.0
        self._follow_playhead = True
        self._auto_fit = True
        self._painted_key: tuple | None = None
        self._generation = 0
        # overview spectrogram state
        self._ov_hop = self._settings.hop
        self._ov_image = np.zeros((1, 0), np.float32)
        self._ov_cols = 0
        self._ov_ready = True
        self._ov_shown_cols = -1
        self._live_pending = False  # a "live" job is computing; results come in order, one at a time
        self._live_failed = False  # stop asking after a failure, until the next restart
        self._detail_key: tuple | None = None

        self._service = SpectrogramService(self)
        self._service.computed.connect(self._on_spectrogram)
        self._service.failed.connect(self._on_spectrogram_failed)

        # before _build: linking the views' x ranges there already fires range changes
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(DETAIL_DELAY_MS)
        self._detail_timer.timeout.connect(self._request_detail)
        self._build()
        self._apply_settings_to_items()
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REPAINT_HZ))
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setAntialiasing(False)
        self.graphics.ci.setContentsMargins(4, 4, 4, 4)
        self.graphics.ci.setSpacing(8)

        self.wave_box = TimeViewBox()
        self.wave_plot = self.graphics.addPlot(
            row=0, col=0, viewBox=self.wave_box, axisItems={"top": TimeAxis(orientation="top")}
        )
        self.wave_plot.showAxis("top")
        self.wave_plot.hideAxis("bottom")
        self.wave_plot.getAxis("left").setWidth(52)
        self.wave_plot.getAxis("left").setTicks([[(-1.0, "-1"), (-0.5, ""), (0.0, "0"), (0.5, ""), (1.0, "1")]])
        self.wave_plot.setYRange(-1.05, 1.05, padding=0)
        self.wave_plot.hideButtons()
        self.wave_curve = pg.PlotDataItem(pen=pg.mkPen(theme.ACCENT, width=1), skipFiniteCheck=True)
        self.wave_plot.addItem(self.wave_curve)
        self.wave_plot.addItem(pg.InfiniteLine(0.0, angle=0, pen=pg.mkPen("#2d3136")), ignoreBounds=True)

        # the predicted-distribution heat map: a row under the waveform, collapsed until a generation has one
        self.dist_box = TimeViewBox()
        self.distribution = DistributionStrip(self.dist_box)
        self.graphics.addItem(self.distribution.plot, row=1, col=0)
        self.distribution.plot.setXLink(self.wave_plot)

        self.freq_axis = FrequencyAxis()
        self.spec_box = TimeViewBox()
        self.spec_plot = self.graphics.addPlot(
            row=2, col=0, viewBox=self.spec_box, axisItems={"bottom": TimeAxis(), "left": self.freq_axis}
        )
        self.spec_plot.getAxis("left").setWidth(52)
        self.spec_plot.hideButtons()
        self.spec_plot.setXLink(self.wave_plot)
        self.overview_image = pg.ImageItem(axisOrder="row-major")
        self.detail_image = pg.ImageItem(axisOrder="row-major")
        self.detail_image.setZValue(1)
        self.detail_image.hide()
        self.spec_plot.addItem(self.overview_image)
        self.spec_plot.addItem(self.detail_image)
        self.colorbar = pg.ColorBarItem(
            values=(-self._settings.db_range, 0.0),
            colorMap=self._settings.colormap,
            interactive=False,
            width=12,
            label="dB",
            colorMapMenu=False,
        )
        self.graphics.addItem(self.colorbar, row=2, col=1)
        self.graphics.ci.layout.setRowStretchFactor(0, 2)
        self.graphics.ci.layout.setRowStretchFactor(1, 1)
        self.graphics.ci.layout.setRowStretchFactor(2, 3)

        playhead_pen = pg.mkPen("#f4f6f8", width=1.5)
        self.playheads = [pg.InfiniteLine(0.0, angle=90, pen=playhead_pen) for _ in range(2)]
        self.regions = [
            pg.LinearRegionItem(
                (0, 0), brush=pg.mkBrush(*theme.SELECTION_BRUSH), pen=pg.mkPen(theme.ACCENT), movable=True
            )
            for _ in range(2)
        ]
        for plot, line, region in zip((self.wave_plot, self.spec_plot), self.playheads, self.regions, strict=True):
            region.setZValue(5)
            region.hide()
            line.setZValue(10)
            plot.addItem(region, ignoreBounds=True)
            plot.addItem(line, ignoreBounds=True)
            region.sigRegionChanged.connect(self._on_region_moved)
        strip_playhead = pg.InfiniteLine(0.0, angle=90, pen=playhead_pen)
        strip_playhead.setZValue(10)
        self.distribution.plot.addItem(strip_playhead, ignoreBounds=True)
        self.playheads.append(strip_playhead)
        for box in (self.wave_box, self.dist_box, self.spec_box):
            box.sigSelecting.connect(self._on_selecting)
            box.sigClicked.connect(self._on_clicked)
            box.sigRangeChangedManually.connect(self._on_manual_range)
            if box is not self.dist_box:  # x-linked to the waveform: its range changes with it
                box.sigXRangeChanged.connect(lambda *_: self._detail_timer.start())
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

        mono = theme.monospace_font()
        self.hover_label = QLabel("")
        self.selection_label = QLabel("")
        self.status_label = QLabel("")
        for label in (self.hover_label, self.selection_label, self.status_label):
            label.setFont(mono)
            label.setObjectName("readout")
        self.status_label.setObjectName("dim")
        readout = QHBoxLayout()
        readout.setContentsMargins(8, 2, 8, 4)
        readout.addWidget(self.hover_label, 1)
        readout.addWidget(self.selection_label)
        readout.addSpacing(18)
        readout.addWidget(self.status_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(readout)
        self._set_x_limits(1.0)
        self.wave_plot.setXRange(0, 1.0, padding=0)

    # -- public API -------------------------------------------------------------------------
    @property
    def track(self) -> AudioTrack | None:
        return self._track

    def set_track(self, track: AudioTrack | None, fit: bool = True) -> None:
        """Show ``track`` (it may keep growing; set ``track.complete`` when it stops). Hides the
        distribution heat map: call ``set_distribution`` after this to show the track's."""
        self._track = track
        self.distribution.set_track(None)
        self._painted_key = None
        self.clear_selection()
        self._restart_spectrogram()
        if fit:
            self.fit()
        if track is None:
            self.wave_curve.setData([], [])

    def set_distribution(self, distribution: DistributionTrack | None) -> None:
        """Show ``distribution`` (it may keep growing) in the heat-map row under the waveform; None hides
        the row."""
        self.distribution.set_track(distribution)

    def refresh(self) -> None:
        """Recompute everything for the current track (after it was replaced wholesale or completed)."""
        self._painted_key = None
        self._restart_spectrogram()

    @property
    def spectrogram_settings(self) -> SpectrogramSettings:
        return self._settings

    def set_spectrogram_settings(self, settings: SpectrogramSettings) -> None:
        if settings == self._settings:
            return
        self._settings = settings
        self._apply_settings_to_items()
        self._restart_spectrogram()
        self.settingsChanged.emit()

    def selection(self) -> tuple[float, float] | None:
        """(start_s, end_s) of the selection, or None."""
        return self._selection

    def set_selection(self, start: float, end: float) -> None:
        start, end = sorted((float(start), float(end)))
        if self._track is not None:
            start, end = max(0.0, start), min(self._track.duration_s, end)
        if end - start <= 0:
            self.clear_selection()
            return
        self._selection = (start, end)
        for region in self.regions:
            region.blockSignals(True)
            region.setRegion((start, end))
            region.show()
            region.blockSignals(False)
        self._update_selection_label()
        self.selectionChanged.emit(start, end)

    def clear_selection(self) -> None:
        had = self._selection is not None
        self._selection = None
        for region in self.regions:
            region.hide()
        self._update_selection_label()
        if had:
            self.selectionChanged.emit(0.0, 0.0)

    @property
    def playhead(self) -> float:
        return self._playhead

    def set_playhead(self, t: float, follow: bool = True) -> None:
        """Move the playhead line to ``t`` seconds; pages the view along when it runs off the right."""
        self._playhead = float(t)
        for line in self.playheads:
            line.setValue(self._playhead)
        if follow and self._follow_playhead:
            x0, x1 = self.view_range()
            span = x1 - x0
            if (self._playhead > x1 or self._playhead < x0) and not self._auto_fit:
                self.wave_plot.setXRange(self._playhead - 0.05 * span, self._playhead + 0.95 * span, padding=0)

    def view_range(self) -> tuple[float, float]:
        (x0, x1), _ = self.wave_box.viewRange()
        return float(x0), float(x1)

    def set_view_range(self, x0: float, x1: float) -> None:
        self._auto_fit = False
        self.wave_plot.setXRange(x0, x1, padding=0)

    def fit(self) -> None:
        """Show the whole track; keep showing it all while it grows (until the user zooms)."""
        self._auto_fit = True
        duration = self._track.duration_s if self._track is not None else 0.0
        self._set_x_limits(duration)
        self.wave_plot.setXRange(0.0, max(duration, 0.5), padding=0)

    def zoom(self, factor: float, centre: float | None = None) -> None:
        """Zoom time by ``factor`` (> 1 zooms in) around ``centre`` seconds (default: view centre)."""
        x0, x1 = self.view_range()
        if centre is None:
            centre = self._playhead if x0 <= self._playhead <= x1 else (x0 + x1) / 2
        self._auto_fit = False
        span = (x1 - x0) / factor
        frac = (centre - x0) / (x1 - x0) if x1 > x0 else 0.5
        self.wave_plot.setXRange(centre - frac * span, centre + (1 - frac) * span, padding=0)

    def scroll(self, fraction: float) -> None:
        """Scroll by ``fraction`` of the visible span (negative = left)."""
        x0, x1 = self.view_range()
        self._auto_fit = False
        d = (x1 - x0) * fraction
        self.wave_plot.setXRange(x0 + d, x1 + d, padding=0)

    def shutdown(self) -> None:
        """Stop the timers and the spectrogram thread (call before the view goes)."""
        self._timer.stop()
        self._detail_timer.stop()
        self._service.shutdown()

    # -- keyboard ----------------------------------------------------------------------------
    def keyPressEvent(self, event):  # noqa: N802 (Qt naming)
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(2.0)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.5)
        elif key == Qt.Key.Key_Left:
            self.scroll(-0.2)
        elif key == Qt.Key.Key_Right:
            self.scroll(0.2)
        elif key == Qt.Key.Key_F:
            self.fit()
        elif key == Qt.Key.Key_Escape:
            self.clear_selection()
        else:
            super().keyPressEvent(event)

    # -- interaction -------------------------------------------------------------------------
    def _on_selecting(self, start: float, end: float, finished: bool) -> None:
        self.set_selection(start, end)

    def _on_clicked(self, t: float) -> None:
        self.clear_selection()
        if self._track is not None:
            t = min(max(0.0, t), self._track.duration_s)
        self.seekRequested.emit(max(0.0, t))

    def _on_region_moved(self, region) -> None:
        start, end = region.getRegion()
        other = self.regions[1] if region is self.regions[0] else self.regions[0]
        other.blockSignals(True)
        other.setRegion((start, end))
        other.blockSignals(False)
        if end > start:
            self._selection = (float(start), float(end))
            self._update_selection_label()
            self.selectionChanged.emit(float(start), float(end))

    def _on_manual_range(self, *_args) -> None:
        self._auto_fit = False

    def _update_selection_label(self) -> None:
        if self._selection is None:
            self.selection_label.setText("")
            return
        a, b = self._selection
        self.selection_label.setText(f"sel {format_time(a)} → {format_time(b)}  len {format_time(b - a)}")

    def _on_mouse_moved(self, pos) -> None:
        track = self._track
        if track is None:
            self.hover_label.setText("")
            return
        if self.wave_box.sceneBoundingRect().contains(pos):
            p = self.wave_box.mapSceneToView(pos)
            t = p.x()
            i = int(t * track.sample_rate)
            if 0 <= i < track.num_samples:
                self.hover_label.setText(f"{format_time(t)}  amp {format_db(amplitude_db(track.samples[i]))}")
            else:
                self.hover_label.setText(format_time(t))
        elif self.distribution.visible and self.dist_box.sceneBoundingRect().contains(pos):
            p = self.dist_box.mapSceneToView(pos)
            self.hover_label.setText(self.distribution.describe(p.x(), p.y()))
        elif self.spec_box.sceneBoundingRect().contains(pos):
            p = self.spec_box.mapSceneToView(pos)
            t, y = p.x(), p.y()
            hz = float(from_axis(y, self._settings.scale))
            db = self.level_at(t, hz)
            db_text = format_db(db) if db is not None else ""
            self.hover_label.setText(f"{format_time(t)}  {format_hz(hz):>9}  {db_text}")
        else:
            self.hover_label.setText("")

    def level_at(self, t: float, hz: float) -> float | None:
        """dB shown at time ``t`` s and frequency ``hz`` (detail image first), or None outside."""
        track = self._track
        if track is None:
            return None
        y = float(to_axis(hz, self._settings.scale))
        lo, hi = axis_range(track.sample_rate, self._settings.scale)
        candidates = []
        if self.detail_image.isVisible() and self._detail_key is not None:
            candidates.append((self.detail_image.image, self._detail_key[0], self._detail_key[1]))
        candidates.append((self._ov_image[:, : self._ov_cols], 0, self._ov_hop))
        for image, first_col, hop in candidates:
            if image is None or image.shape[1] == 0:
                continue
            col = int(round(t * track.sample_rate / hop)) - first_col
            row = int((y - lo) / (hi - lo) * image.shape[0])
            if 0 <= col < image.shape[1] and 0 <= row < image.shape[0]:
                return float(image[row, col])
        return None

    # -- spectrogram -------------------------------------------------------------------------
    def _apply_settings_to_items(self) -> None:
        s = self._settings
        cmap = pg.colormap.get(s.colormap)
        lut = cmap.getLookupTable(0.0, 1.0, 256)
        for image in (self.overview_image, self.detail_image):
            image.setLookupTable(lut)
            image.setLevels((-s.db_range, 0.0))
        self.colorbar.setColorMap(cmap)
        self.colorbar.setLevels((-s.db_range, 0.0))
        self.freq_axis.set_scale(s.scale)
        sr = self._track.sample_rate if self._track is not None else 48000
        lo, hi = axis_range(sr, s.scale)
        self.spec_plot.setYRange(lo, hi, padding=0)

    def _restart_spectrogram(self) -> None:
        self._generation += 1
        self._detail_key = None
        self.detail_image.hide()
        self._ov_cols = 0
        self._ov_shown_cols = -1
        self._ov_hop = self._settings.hop
        self._live_pending = False  # a result of the old generation is dropped when it comes
        self._live_failed = False
        self.status_label.setText("")
        track = self._track
        if track is not None:
            lo, hi = axis_range(track.sample_rate, self._settings.scale)
            self.spec_plot.setYRange(lo, hi, padding=0)
        if track is None or track.num_samples == 0:
            self._ov_ready = True
            self._ov_image = np.zeros((self._rows(), 0), np.float32)
            self.overview_image.clear()
            return
        while column_count(track.num_samples, self._ov_hop) > OVERVIEW_COLUMNS:
            self._ov_hop *= 2
        self._ov_ready = False
        cols = self._target_columns(track, self._ov_hop)
        self._service.submit(
            SpectrogramJob(
                "overview", self._generation, track.samples, track.sample_rate, self._settings, 0, cols, self._ov_hop
            )
        )

    def _rows(self) -> int:
        return self._settings.n_fft // 2 + 1 if self._settings.scale == "linear" else 256

    def _target_columns(self, track: AudioTrack, hop: int) -> int:
        """Columns computable now: all of a complete track, only whole frames of a growing one."""
        n = track.num_samples
        if track.complete:
            return column_count(n, hop)
        half = self._settings.n_fft // 2
        return 0 if n < half else (n - half) // hop + 1

    def _on_spectrogram(self, result: SpectrogramResult) -> None:
        job = result.job
        if job.generation != self._generation:
            return
        self._painted_key = None  # the next tick shows it
        if job.kind == "overview":
            self._ov_image = np.ascontiguousarray(result.image)
            self._ov_cols = result.image.shape[1]
            self._ov_ready = True
            self._ov_shown_cols = -1
            self._show_overview()
            self._detail_timer.start()
        elif job.kind == "live":
            self._live_pending = False
            if job.first_column == self._ov_cols and job.hop == self._ov_hop:
                self._append_overview(result.image)
        else:
            self._detail_key = (job.first_column, job.hop)
            sr = job.sample_rate
            lo, hi = axis_range(sr, job.settings.scale)
            x = (job.first_column * job.hop - job.hop / 2) / sr
            self.detail_image.setImage(result.image, autoLevels=False)
            self.detail_image.setRect(QRectF(x, lo, job.columns * job.hop / sr, hi - lo))
            self.detail_image.show()

    def _on_spectrogram_failed(self, job: SpectrogramJob, title: str, message: str) -> None:
        """A spectrogram job raised (the worker logged it): keep the view usable, say so once."""
        if job.generation != self._generation:
            return
        log.warning("%s: %s", title, message.splitlines()[0])
        if job.kind == "overview":
            self._ov_ready = True  # show the waveform; live columns pick up from column 0
        elif job.kind == "live":
            self._live_pending = False
            self._live_failed = True
        self.status_label.setText(
            f"spectrogram failed: {message.splitlines()[0]} — change the spectrogram settings to try again"
        )

    def _request_live_columns(self) -> None:
        """Ask the worker for overview columns of samples that arrived since (one job at a time)."""
        track = self._track
        if track is None or not self._ov_ready or self._live_pending or self._live_failed:
            return
        target = self._target_columns(track, self._ov_hop)
        if target <= self._ov_cols:
            return
        count = min(target - self._ov_cols, LIVE_COLUMNS_PER_JOB)
        self._live_pending = True
        # track.samples covers whole frames only (``_target_columns``); appends never rewrite them
        self._service.submit(
            SpectrogramJob(
                "live", self._generation, track.samples, track.sample_rate, self._settings, self._ov_cols, count,
                self._ov_hop,
            )
        )

    def _append_overview(self, new: np.ndarray) -> None:
        """Append the dB columns ``new`` [rows, k] to the overview; halve it when it gets too long."""
        need = self._ov_cols + new.shape[1]
        if self._ov_image.shape[0] != new.shape[0] or need > self._ov_image.shape[1]:
            grown = np.zeros((new.shape[0], max(need, 2 * self._ov_image.shape[1], 256)), np.float32)
            if self._ov_image.shape[0] == new.shape[0]:
                grown[:, : self._ov_cols] = self._ov_image[:, : self._ov_cols]
            self._ov_image = grown
        self._ov_image[:, self._ov_cols : need] = new
        self._ov_cols = need
        if self._ov_cols > 2 * OVERVIEW_COLUMNS:  # keep memory bounded on endless recordings
            keep = self._ov_image[:, : self._ov_cols : 2]
            self._ov_image = np.ascontiguousarray(keep)
            self._ov_cols = keep.shape[1]
            self._ov_hop *= 2

    def _show_overview(self) -> None:
        track = self._track
        if track is None or self._ov_cols == self._ov_shown_cols:
            return
        self._ov_shown_cols = self._ov_cols
        if self._ov_cols == 0:
            self.overview_image.clear()
            return
        sr = track.sample_rate
        lo, hi = axis_range(sr, self._settings.scale)
        self.overview_image.setImage(self._ov_image[:, : self._ov_cols], autoLevels=False)
        self.overview_image.setRect(
            QRectF(-self._ov_hop / 2 / sr, lo, self._ov_cols * self._ov_hop / sr, hi - lo)
        )

    def _request_detail(self) -> None:
        """Compute the visible range at full resolution when the overview is coarser than needed."""
        track = self._track
        if track is None or not self._ov_ready or self._ov_hop <= self._settings.hop:
            self.detail_image.hide()
            return
        x0, x1 = self.view_range()
        x0, x1 = max(0.0, x0), min(track.duration_s, x1)
        if x1 <= x0:
            return
        sr = track.sample_rate
        hop = self._settings.hop
        while (x1 - x0) * sr / hop > DETAIL_COLUMNS:
            hop *= 2
        if hop >= self._ov_hop:
            self.detail_image.hide()
            self._detail_key = None
            return
        first = int(math.floor(x0 * sr / hop))
        cols = int(math.ceil(x1 * sr / hop)) - first + 2
        self._service.submit(
            SpectrogramJob("detail", self._generation, track.samples, sr, self._settings, first, cols, hop)
        )

    # -- repaint -----------------------------------------------------------------------------
    def _set_x_limits(self, duration: float) -> None:
        span = max(duration, 0.5)
        sr = self._track.sample_rate if self._track is not None else 48000
        for box in (self.wave_box, self.dist_box, self.spec_box):
            box.setLimits(xMin=-0.02 * span, xMax=1.02 * span, minXRange=32.0 / sr)

    def _tick(self) -> None:
        track = self._track
        if track is None:
            return
        self.distribution.repaint()  # uploads only when rows arrived since
        key = (track.version, self.view_range(), int(self.wave_box.width()))
        if key == self._painted_key:
            return
        grew = self._painted_key is None or self._painted_key[0] != track.version
        if grew:
            self._set_x_limits(track.duration_s)
            if self._auto_fit:
                self.wave_plot.setXRange(0.0, max(track.duration_s, 0.5), padding=0)
                key = (track.version, self.view_range(), int(self.wave_box.width()))
        self._request_live_columns()  # its result resets the painted key, so the tick after shows it
        self._show_overview()
        x0, x1 = self.view_range()
        xs, ys = track.envelope(x0, x1, max(1, int(self.wave_box.width())))
        self.wave_curve.setData(xs, ys)
        self._painted_key = key
