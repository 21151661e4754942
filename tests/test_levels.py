"""Level meter logic: dBFS of known signals, the sliding window, peak hold and decay, clipping."""

import numpy as np
import pytest

from studio.engine.audio.levels import SILENCE_DB, LevelMeter, peak_of, rms_of, to_db


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sine(amplitude: float, frames: int = 4800, sr: int = 48000) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * 1000 * np.arange(frames) / sr)).astype(np.float32)


def test_db_of_known_signals():
    assert to_db(1.0) == 0.0
    assert to_db(0.5) == pytest.approx(-6.02, abs=0.01)
    assert to_db(0.0) == SILENCE_DB
    x = sine(0.5)
    assert to_db(peak_of(x)) == pytest.approx(-6.02, abs=0.05)
    assert to_db(rms_of(x)) == pytest.approx(-9.03, abs=0.05)
    assert peak_of(np.zeros((0, 2))) == 0.0 and rms_of(np.zeros(0)) == 0.0
    stereo = np.stack([sine(0.5), -sine(0.25)], axis=1)
    assert peak_of(stereo) == pytest.approx(0.5, abs=1e-3)


def test_window_follows_recent_audio_and_hold_then_decays():
    clock = FakeClock()
    meter = LevelMeter(48000, window_s=0.05, hold_s=1.0, decay_db_per_s=20.0, clock=clock)
    assert meter.levels().peak_db == SILENCE_DB
    meter.update(sine(0.5, 2400))
    assert meter.levels().peak_db == pytest.approx(-6.0, abs=0.1)
    clock.now += 0.5
    meter.update(sine(0.05, 2400))  # quiet now: the window forgets the loud block
    levels = meter.levels()
    assert levels.peak_db == pytest.approx(-26.0, abs=0.1)
    assert levels.rms_db == pytest.approx(-29.0, abs=0.1)
    assert levels.peak_hold_db == pytest.approx(-6.0, abs=0.1)  # still held
    clock.now += 1.0  # 1.5 s after the peak: 0.5 s of decay at 20 dB/s
    assert meter.levels().peak_hold_db == pytest.approx(-16.0, abs=0.2)
    clock.now += 10.0
    assert meter.levels().peak_hold_db == pytest.approx(-26.0, abs=0.1)  # never below the live peak


def test_clip_indicator_is_sticky_until_reset():
    meter = LevelMeter(48000)
    meter.update(sine(0.9))
    assert not meter.levels().clipped
    block = sine(0.5)
    block[[10, 20, 30]] = [1.0, -1.0, 1.2]
    meter.update(block)
    meter.update(sine(0.1))
    levels = meter.levels()
    assert levels.clipped and levels.clip_count == 3
    assert "CLIP" in levels.as_text()
    meter.reset_clip()
    assert not meter.levels().clipped


def test_bad_rate_is_refused():
    with pytest.raises(ValueError):
        LevelMeter(0)
