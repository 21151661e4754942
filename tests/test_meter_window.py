"""The level meter's window with long blocks (the recorder's writer may drain 0.3 s at once after a
stall under load): the reading must be of the last ``window_s``, not the average of the whole block."""

import numpy as np
import pytest

from studio.engine.audio.levels import LevelMeter


def sine(seconds: float, amplitude: float, sr: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_a_long_block_reads_as_its_last_window():
    meter = LevelMeter(48000, window_s=0.05)
    block = np.concatenate([np.zeros(int(0.2 * 48000), np.float32), sine(0.1, 0.5)])  # tone began 0.1 s ago
    meter.update(block[:, None])
    levels = meter.levels()
    assert levels.peak_db == pytest.approx(-6.02, abs=0.05)
    assert levels.rms_db == pytest.approx(-9.03, abs=0.1)  # the whole block's RMS would read -13.8


def test_the_window_still_spans_several_short_blocks_and_peak_hold_sees_all():
    meter = LevelMeter(48000, window_s=0.05)
    meter.update(np.concatenate([sine(0.3, 0.9), sine(0.04, 0.1)]))  # loud long ago, quiet at the end
    meter.update(sine(0.01, 0.1))
    meter.update(sine(0.01, 0.1))
    levels = meter.levels()
    assert levels.peak_db == pytest.approx(-20.0, abs=0.1)  # the loud part left the window
    assert levels.peak_hold_db == pytest.approx(20 * np.log10(0.9), abs=0.05)  # but was held
