"""The predicted-distribution heat map under the waveform (WaveNet / WaveRNN generations).

``DistributionTrack`` holds what a generation reported through ``options['on_distribution']`` (see
``studio.engine.models.distribution``) as heat-map columns: column ``j`` is the distribution the sample
``j * hop`` was drawn from, over ``bins`` class bins (probabilities summing to one; classes summed into
at most ``MAX_VIEW_BINS`` bins by the worker). It starts at the tap stride and, to keep an hour-long
generation within ``bins * max_columns`` floats, doubles ``hop`` (keeping every other column) when it
would grow past ``max_columns`` — every column stays a real row of probabilities.

``DistributionStrip`` is the timeline's heat-map row: a plot x-linked to the waveform, one
``ImageItem`` (row-major float32, fixed levels 0..1, a perceptual LUT with a gamma so that small
probabilities show), repainted from the timeline's timer when the track's ``version`` changed — never
per block. Everything here runs on the GUI thread.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from studio.ui.timefmt import format_time

MAX_COLUMNS = 8192
COLORMAP = "magma"
LUT_GAMMA = 0.4
"""Colour index = probability ** LUT_GAMMA: a 1 % class is 16 % up the colormap, 10 % is 40 %."""
STRIP_HEIGHT = 90  # pixels the heat-map row prefers


class DistributionTrack:
    """Heat-map columns of one generation's predicted distribution (see the module doc)."""

    def __init__(self, sample_rate: int, stride: int, classes: int, max_columns: int = MAX_COLUMNS) -> None:
        if stride < 1 or classes < 1 or max_columns < 2:
            raise ValueError(f"need stride >= 1, classes >= 1, max_columns >= 2; got {stride}, {classes}, {max_columns}")
        self.sample_rate = int(sample_rate)
        self.stride = int(stride)
        self.hop = int(stride)
        self.classes = int(classes)
        self.max_columns = int(max_columns)
        self.columns = 0
        self.version = 0
        self._image = np.zeros((0, 0), np.float32)  # [bins, capacity]

    @property
    def bins(self) -> int:
        return self._image.shape[0]

    @property
    def image(self) -> np.ndarray:
        """The columns so far, ``[bins, columns]`` float32 (a view)."""
        return self._image[:, : self.columns]

    @property
    def span_s(self) -> float:
        """Seconds the columns cover (each column stands for ``hop`` samples)."""
        return self.columns * self.hop / self.sample_rate

    def append(self, start_sample: int, rows: np.ndarray) -> None:
        """Add the rows of samples ``start_sample + i * stride`` (``rows [n, bins]``, probabilities)."""
        rows = np.asarray(rows, np.float32)
        if rows.ndim != 2 or rows.shape[0] == 0:
            return
        samples = int(start_sample) + self.stride * np.arange(rows.shape[0])
        while True:
            keep = samples % self.hop == 0
            cols = samples[keep] // self.hop
            if cols.size == 0 or int(cols[-1]) < self.max_columns:
                break
            self._halve()
        if cols.size == 0:
            return
        need = int(cols[-1]) + 1
        if self.bins != rows.shape[1]:
            if self.columns:
                raise ValueError(f"rows have {rows.shape[1]} bins, the track has {self.bins}")
            self._image = np.zeros((rows.shape[1], 0), np.float32)
        if need > self._image.shape[1]:
            grown = np.zeros((self.bins, min(self.max_columns, max(need, 2 * self._image.shape[1], 256))), np.float32)
            grown[:, : self.columns] = self._image[:, : self.columns]
            self._image = grown
        self._image[:, cols] = rows[keep].T
        self.columns = max(self.columns, need)
        self.version += 1

    def _halve(self) -> None:
        """Keep every other column (samples ``j * 2 * hop``): ``hop`` doubles, memory stays bounded."""
        kept = self._image[:, : self.columns : 2]
        self._image = np.zeros_like(self._image)
        self._image[:, : kept.shape[1]] = kept
        self.columns = kept.shape[1]
        self.hop *= 2
        self.version += 1


def lookup_table(colormap: str = COLORMAP, gamma: float = LUT_GAMMA) -> np.ndarray:
    """256-entry RGBA LUT for levels (0, 1): entry ``i`` is ``colormap((i / 255) ** gamma)``."""
    base = pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=True)
    index = np.round((np.linspace(0.0, 1.0, 256) ** gamma) * 255).astype(np.int64)
    return base[index]


class DistributionStrip:
    """The heat-map row: ``plot`` (a PlotItem for the timeline's layout) showing one ``DistributionTrack``.

    ``set_track(track | None)`` picks what to show (None hides the row); ``repaint()`` (from the
    timeline's timer) uploads the image when the track changed since the last call. ``view_box``: the
    timeline's (so drags select and clicks seek as in the other rows).
    """

    def __init__(self, view_box: pg.ViewBox) -> None:
        self.plot = pg.PlotItem(viewBox=view_box)
        self.plot.hideButtons()
        self.plot.hideAxis("bottom")
        left = self.plot.getAxis("left")
        left.setWidth(52)
        left.setLabel("class")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(lookup_table())
        self.image.setLevels((0.0, 1.0))
        self.plot.addItem(self.image)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.disableAutoRange()  # x follows the waveform (linked), y is the class range
        self._track: DistributionTrack | None = None
        self._shown: tuple | None = None
        self.plot.setPreferredHeight(STRIP_HEIGHT)
        self._set_visible(False)

    @property
    def track(self) -> DistributionTrack | None:
        return self._track

    @property
    def visible(self) -> bool:
        return self.plot.isVisible()

    def set_track(self, track: DistributionTrack | None) -> None:
        self._track = track
        self._shown = None
        self.image.clear()
        if track is not None:
            c = track.classes
            self.plot.setYRange(0, c, padding=0)
            self.plot.getAxis("left").setTicks([[(0, "0"), (c / 2, f"{c // 2}"), (c, f"{c}")]])
        self._set_visible(track is not None)
        self.repaint()

    def repaint(self) -> None:
        """Show the track's columns if they changed (GUI timer)."""
        track = self._track
        if track is None:
            return
        key = (id(track), track.version)
        if key == self._shown:
            return
        self._shown = key
        if track.columns == 0:
            self.image.clear()
            return
        self.image.setImage(track.image, autoLevels=False, levels=(0.0, 1.0))
        sr, hop = track.sample_rate, track.hop
        self.image.setRect(QRectF(-hop / 2 / sr, 0.0, track.columns * hop / sr, float(track.classes)))

    def value_at(self, t: float, y: float) -> tuple[int, float] | None:
        """(first class of the bin, probability of that bin) at time ``t`` s and height ``y`` (classes), or
        None outside the columns."""
        track = self._track
        if track is None or track.columns == 0 or track.bins == 0:
            return None
        col = int(round(t * track.sample_rate / track.hop))
        b = int(y / track.classes * track.bins)
        if not (0 <= col < track.columns and 0 <= b < track.bins):
            return None
        return b * track.classes // track.bins, float(track.image[b, col])

    def describe(self, t: float, y: float) -> str:
        """Hover readout: time, class (bin) and its probability."""
        hit = self.value_at(t, y)
        if hit is None:
            return format_time(t)
        return f"{format_time(t)}  class {hit[0]:>5}  p {hit[1]:.3f}"

    def _set_visible(self, visible: bool) -> None:
        # a hidden item in a graphics layout still takes its row: let the row collapse too
        self.plot.setVisible(visible)
        self.plot.setMaximumHeight(16777215 if visible else 0)
        self.plot.setMinimumHeight(40 if visible else 0)
