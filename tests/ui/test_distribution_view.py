"""The predicted-distribution heat map under the waveform: a real tiny WaveNet generates in the window with
the "Show predicted distribution" option on and off; plus the heat map's column store on its own."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support.saved_models import load_in_window, save_tiny_wavenet


@pytest.fixture
def tiny_model(private_dirs):
    """An unconditional WaveNet of a few thousand parameters, saved in the user models folder."""
    return save_tiny_wavenet(private_dirs / "models")


def spy_on_requests(monkeypatch, model) -> list[dict]:
    """Note the options of every request the real model streams (it still generates as usual)."""
    seen: list[dict] = []
    real_stream = model.stream

    def stream(request):
        seen.append(dict(request.options))
        return real_stream(request)

    monkeypatch.setattr(model, "stream", stream)
    return seen


def generate(qtbot, window, seconds: float):
    window.generate_panel.seconds.setValue(seconds)
    window.generate_panel.generate_button.click()
    take = window.generation_take
    assert take is not None
    qtbot.waitUntil(lambda: window.generation is None, timeout=30000)
    return take


@pytest.mark.sound
def test_heat_map_covers_the_generation_with_probabilities(qtbot, tiny_model, window, monkeypatch, artifacts_dir):
    model = load_in_window(qtbot, window, tiny_model)
    panel = window.generate_panel
    assert panel.show_distribution.isEnabled()
    panel.show_distribution.setChecked(True)
    panel.temperature.setValue(0.1)  # sharper rows: a more telling screenshot of an untrained model
    requests = spy_on_requests(monkeypatch, model)
    take = generate(qtbot, window, 0.5)
    strip = window.timeline.distribution
    track = take.distribution
    made = take.track.num_samples
    assert made == 8000 and track is not None and strip.track is track
    assert callable(requests[0]["on_distribution"]) and requests[0]["distribution_stride"] == track.stride
    # the GUI timer shows every column: one per `hop` samples over the whole generated span
    qtbot.waitUntil(lambda: strip.image.image is not None and strip.image.image.shape[1] == track.columns)
    assert strip.visible
    assert track.columns == (made - 1) // track.hop + 1
    image = strip.image.image
    assert image.shape == (128, track.columns)  # 256 mu-law classes summed in pairs
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(image.sum(axis=0), 1.0, atol=1e-4)
    assert image.max(axis=0).min() > 1.0 / 128  # real distributions, not flat filler
    # time-aligned with the waveform: the image spans the generated seconds on the shared x axis
    rect = strip.image.mapRectToParent(strip.image.boundingRect())
    assert rect.left() <= 0.0 and rect.right() >= (made - track.hop) / 16000
    assert rect.top() == 0.0 and rect.height() == 256
    assert strip.plot.getViewBox().viewRange()[0] == pytest.approx(window.timeline.wave_box.viewRange()[0])
    assert strip.plot.height() > 30
    assert "class" in strip.describe(0.25, 128.0) and "p 0." in strip.describe(0.25, 128.0)
    window.grab().save(os.path.join(artifacts_dir, "main-window-distribution.png"))

    panel.show_distribution.setChecked(False)  # the option hides it at once
    assert not strip.visible
    qtbot.waitUntil(lambda: strip.plot.height() == 0)  # the row collapses at the next layout pass
    panel.show_distribution.setChecked(True)
    assert strip.visible and strip.track is track


@pytest.mark.sound
def test_option_off_sets_no_hook_and_hides_the_heat_map(qtbot, tiny_model, window, monkeypatch):
    model = load_in_window(qtbot, window, tiny_model)
    window.generate_panel.show_distribution.setChecked(False)
    requests = spy_on_requests(monkeypatch, model)
    take = generate(qtbot, window, 0.2)
    assert take.track.num_samples == 3200
    assert "on_distribution" not in requests[0] and "distribution_stride" not in requests[0]
    assert take.distribution is None
    strip = window.timeline.distribution
    assert not strip.visible and strip.track is None
    qtbot.waitUntil(lambda: strip.plot.height() == 0)


@pytest.mark.sound
def test_the_option_is_remembered(qtbot, make_window):
    first = make_window()
    assert not first.generate_panel.show_distribution.isChecked()
    first.generate_panel.show_distribution.setChecked(True)
    first.save_settings()
    second = make_window()
    assert second.generate_panel.show_distribution.isChecked()
    assert not second.generate_panel.show_distribution.isEnabled()  # until a WaveNet/WaveRNN is loaded


# -- the column store on its own ----------------------------------------------------------------------------
def rows(n: int, bins: int = 4, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed).random((n, bins)).astype(np.float32)
    return r / r.sum(axis=1, keepdims=True)


def test_track_places_rows_by_sample_and_halves_when_full():
    from studio.ui.views.distribution import DistributionTrack

    track = DistributionTrack(16000, stride=8, classes=256, max_columns=16)
    first = rows(10)
    track.append(0, first)  # samples 0, 8, ..., 72
    assert track.columns == 10 and track.hop == 8 and track.version == 1
    np.testing.assert_array_equal(track.image, first.T)
    later = rows(10, seed=1)
    track.append(80, later)  # samples 80 ... 152: column 19 > 15, so every other column is dropped
    assert track.hop == 16 and track.columns == 10
    np.testing.assert_array_equal(track.image[:, :5], first[::2].T)
    np.testing.assert_array_equal(track.image[:, 5:], later[::2].T)
    assert track.span_s == pytest.approx(10 * 16 / 16000)
    with pytest.raises(ValueError, match="5 bins"):
        track.append(160, rows(2, bins=5))


def test_lookup_table_lifts_small_probabilities():
    from studio.ui.views.distribution import lookup_table

    lut = lookup_table()
    assert lut.shape == (256, 4)
    assert lut[3, :3].sum() > 3 * lut[1, :3].sum() / 2  # 1 % is already well up the colormap
