"""Axes of the views: time as MM:SS.mmm, frequency in Hz on a linear, log or mel y coordinate."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

from studio.ui.timefmt import format_time
from studio.workers.spectrum import from_axis, to_axis

NICE_HZ = (
    20, 50, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 4000, 5000, 7000, 10000, 15000, 20000, 30000, 40000
)


class TimeAxis(pg.AxisItem):
    """Bottom axis in seconds that labels ticks as clock time."""

    def __init__(self, orientation: str = "bottom", **kwargs) -> None:
        super().__init__(orientation, **kwargs)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        millis = spacing < 1.0
        out = []
        for v in values:
            s = format_time(v * scale, millis=millis)
            if millis and spacing >= 0.1:
                s = s[:-2]  # 00:01.2
            out.append(s)
        return out


class FrequencyAxis(pg.AxisItem):
    """Left axis whose coordinate is Hz, log10 Hz or mel (``set_scale``); labels are always Hz."""

    def __init__(self, **kwargs) -> None:
        super().__init__("left", **kwargs)
        self.scale_name = "linear"

    def set_scale(self, scale: str) -> None:
        self.scale_name = scale
        self.picture = None
        self.update()

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (Qt naming)
        if self.scale_name == "linear":
            return super().tickValues(minVal, maxVal, size)
        lo_hz, hi_hz = float(from_axis(minVal, self.scale_name)), float(from_axis(maxVal, self.scale_name))
        candidates = [hz for hz in NICE_HZ if lo_hz <= hz <= hi_hz]
        max_ticks = max(2, int(size / 28))
        while len(candidates) > max_ticks:
            candidates = candidates[::2]
        return [(1.0, [float(to_axis(hz, self.scale_name)) for hz in candidates])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        hz = from_axis(np.asarray(values, np.float64), self.scale_name) if self.scale_name != "linear" else values
        out = []
        for f in hz:
            f = float(f)
            if not math.isfinite(f):
                out.append("")
            elif f >= 1000:
                out.append(f"{f / 1000:g}k")
            else:
                out.append(f"{f:.0f}")
        return out
