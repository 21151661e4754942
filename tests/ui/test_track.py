"""The min/max pyramid behind the waveform view (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.ui.views.track import BASE_BLOCK, FACTOR, AudioTrack


def test_pyramid_built_in_blocks_equals_pyramid_built_at_once():
    x = np.random.default_rng(1).standard_normal(1_000_003).astype(np.float32)
    grown = AudioTrack(16000)
    for i, start in enumerate(range(0, x.shape[0], 777)):
        grown.append(x[start : start + 777])
        if i % 5 == 0:
            grown.refresh_peaks()
    grown.refresh_peaks()
    whole = AudioTrack(16000, x)
    whole.refresh_peaks()
    assert len(grown.levels) == len(whole.levels) >= 3
    for a, b in zip(grown.levels, whole.levels, strict=True):
        np.testing.assert_array_equal(a.mins.data, b.mins.data)
        np.testing.assert_array_equal(a.maxs.data, b.maxs.data)


def test_envelope_keeps_every_peak_and_stays_small_when_zoomed_out():
    sr = 16000
    x = np.zeros(sr * 600, np.float32)  # ten minutes of silence with two single-sample clicks
    x[123_457] = 0.9
    x[7_654_321] = -0.8
    track = AudioTrack(sr, x)
    xs, ys = track.envelope(0.0, track.duration_s, 1000)
    assert xs.shape == ys.shape
    assert ys.shape[0] <= 2 * FACTOR * 1000  # bounded by the width, not by the 9.6 M samples
    assert ys.max() == np.float32(0.9) and ys.min() == np.float32(-0.8)
    # zoomed in far enough the samples themselves are drawn, at their times
    xs, ys = track.envelope(123_457 / sr - 0.001, 123_457 / sr + 0.001, 1000)
    assert ys.shape[0] < 2 * 0.002 * sr + 8 and ys.max() == np.float32(0.9)
    assert abs(xs[np.argmax(ys)] - 123_457 / sr) < 1e-9


def test_envelope_of_a_growing_track_includes_the_newest_block():
    track = AudioTrack(8000, complete=False)
    track.append(np.full(BASE_BLOCK * 1000, 0.1, np.float32))
    track.envelope(0, track.duration_s, 200)
    track.append(np.full(BASE_BLOCK * 3 + 5, -0.7, np.float32))
    xs, ys = track.envelope(0, track.duration_s, 200)
    assert ys.min() == np.float32(-0.7)
    assert xs.max() >= track.duration_s - 2 * BASE_BLOCK * 8 / 8000


def test_load_track_reads_a_file_with_its_pyramid_ready(tmp_path):
    import soundfile as sf

    from studio.ui.views.track import load_track

    sr = 16000
    x = np.zeros(sr * 30, np.float32)
    x[sr * 12] = 0.75
    stereo = np.stack([x, x], axis=1)
    path = tmp_path / "click.flac"
    sf.write(path, stereo, sr, subtype="PCM_24")
    track = load_track(path)
    assert track.name == "click.flac" and track.complete and track.sample_rate == sr
    assert track.num_samples == x.shape[0]
    # every level is built before the track is shown: no pyramid work left for the GUI thread
    assert len(track.levels) >= 3
    assert len(track.levels[0]) == -(-x.shape[0] // BASE_BLOCK)
    assert float(track.levels[-1].maxs.data.max()) == pytest.approx(0.75, abs=1e-4)
