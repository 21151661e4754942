"""The stacked waveform + spectrogram view, driven offscreen with real widgets and mouse events."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from studio.ui.timefmt import format_time
from studio.ui.views.timeline import TimelineView
from studio.ui.views.track import FACTOR, AudioTrack
from studio.workers.spectrum import SpectrogramSettings

from .conftest import tone


@pytest.fixture
def timeline(qtbot, studio_app):
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(1000, 520)
    view.show()
    qtbot.waitExposed(view)
    yield view
    view.shutdown()


def wait_spectrogram(qtbot, view):
    qtbot.waitUntil(lambda: view._ov_ready and view._ov_cols > 0 and view.overview_image.image is not None, timeout=10000)


def test_both_views_show_a_tone(qtbot, timeline):
    timeline.set_track(AudioTrack(48000, tone(1000.0, 1.5)))
    wait_spectrogram(qtbot, timeline)
    qtbot.waitUntil(lambda: timeline.wave_curve.xData is not None and len(timeline.wave_curve.xData) > 0)
    ys = timeline.wave_curve.yData
    assert 0.45 < ys.max() <= 0.5001 and -0.5001 <= ys.min() < -0.45
    assert timeline.overview_image.image.shape[0] == 1024 // 2 + 1
    tone_db = timeline.level_at(0.75, 1000.0)
    assert tone_db is not None and -12.0 < tone_db < 0.0  # a -6 dBFS sine
    assert tone_db - timeline.level_at(0.75, 6000.0) > 50.0
    # settings change: log scale, other FFT — the tone is still where it belongs
    timeline.set_spectrogram_settings(SpectrogramSettings(n_fft=2048, hop=512, scale="mel", db_range=120))
    wait_spectrogram(qtbot, timeline)
    assert timeline.overview_image.image.shape[0] == 256
    assert timeline.level_at(0.75, 1000.0) - timeline.level_at(0.75, 4000.0) > 40.0


def drag(qtbot, view, x0_s, x1_s):
    """A real left-button drag across the waveform plot from x0_s to x1_s seconds."""
    box = view.wave_box
    gv = view.graphics

    def to_widget(t):
        scene = box.mapViewToScene(QPointF(t, 0.0))
        return gv.mapFromScene(scene)

    a, b = to_widget(x0_s), to_widget(x1_s)
    viewport = gv.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    steps = 8
    for i in range(1, steps + 1):
        p = QPoint(int(a.x() + (b.x() - a.x()) * i / steps), a.y())
        qtbot.mouseMove(viewport, p)
        # pyqtgraph starts a drag only from real move events with the button held
        from PySide6.QtGui import QMouseEvent

        ev = QMouseEvent(
            QMouseEvent.Type.MouseMove, QPointF(p), QPointF(viewport.mapToGlobal(p)), Qt.MouseButton.NoButton,
            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
        )
        studio_app_instance().sendEvent(viewport, ev)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)


def studio_app_instance():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance()


def test_drag_selects_click_seeks_and_readouts_follow(qtbot, timeline):
    timeline.set_track(AudioTrack(16000, tone(440.0, 4.0, sr=16000)))
    qtbot.wait(100)
    with qtbot.waitSignal(timeline.selectionChanged, timeout=3000):
        drag(qtbot, timeline, 1.0, 2.5)
    start, end = timeline.selection()
    assert start == pytest.approx(1.0, abs=0.05) and end == pytest.approx(2.5, abs=0.05)
    expected = f"sel {format_time(start)} → {format_time(end)}  len {format_time(end - start)}"
    assert timeline.selection_label.text() == expected
    assert expected.startswith(("sel 00:00.9", "sel 00:01.0"))
    # a click seeks and clears the selection
    point = timeline.graphics.mapFromScene(timeline.wave_box.mapViewToScene(QPointF(3.0, 0.0)))
    with qtbot.waitSignal(timeline.seekRequested, timeout=3000) as seek:
        qtbot.mouseClick(timeline.graphics.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert seek.args[0] == pytest.approx(3.0, abs=0.05)
    assert timeline.selection() is None
    # hovering the spectrogram reports time, frequency and level
    spec_point = timeline.graphics.mapFromScene(timeline.spec_box.mapViewToScene(QPointF(2.0, 440.0)))
    timeline._on_mouse_moved(timeline.graphics.mapToScene(spec_point))
    assert timeline.hover_label.text().startswith("00:02.0") and "Hz" in timeline.hover_label.text()


def test_zoom_scroll_fit_and_playhead_paging(qtbot, timeline):
    timeline.set_track(AudioTrack(16000, tone(440.0, 10.0, sr=16000)))
    qtbot.wait(50)
    assert timeline.view_range() == pytest.approx((0.0, 10.0), abs=0.01)
    timeline.set_playhead(0.0)
    qtbot.keyClick(timeline, Qt.Key.Key_Plus)
    x0, x1 = timeline.view_range()
    assert x1 - x0 == pytest.approx(5.0, rel=0.01)
    qtbot.keyClick(timeline, Qt.Key.Key_Right)
    assert timeline.view_range()[0] == pytest.approx(x0 + 1.0, abs=0.02)
    timeline.set_playhead(8.0)  # off the right edge: the view pages along
    x0, x1 = timeline.view_range()
    assert x0 <= 8.0 <= x1
    qtbot.keyClick(timeline, Qt.Key.Key_F)
    assert timeline.view_range() == pytest.approx((0.0, 10.0), abs=0.01)


def test_live_growth_repaints_from_the_timer(qtbot, timeline):
    track = AudioTrack(16000, complete=False)
    timeline.set_track(track)
    x = tone(2000.0, 2.0, sr=16000)
    for start in range(0, x.shape[0], 1600):  # ten blocks a second of audio
        track.append(x[start : start + 1600])
        qtbot.wait(5)
    qtbot.waitUntil(lambda: timeline.wave_curve.xData is not None and timeline.wave_curve.xData.max() > 1.9, timeout=3000)
    qtbot.waitUntil(lambda: timeline._ov_cols >= 120, timeout=3000)  # columns computed as audio arrived
    assert timeline.view_range()[1] >= 1.99  # kept fitted while growing
    assert timeline.level_at(1.0, 2000.0) - timeline.level_at(1.0, 6000.0) > 40.0


def test_long_track_uses_overview_and_detail_spectrograms(qtbot, timeline):
    sr = 8000
    x = np.tile(tone(1000.0, 1.0, sr=sr, amp=0.3), 20 * 60)  # twenty minutes
    timeline.set_track(AudioTrack(sr, x))
    wait_spectrogram(qtbot, timeline)
    assert timeline._ov_cols <= 4096 + 1 and timeline._ov_hop > timeline.spectrogram_settings.hop
    assert len(timeline.wave_curve.yData) <= 2 * FACTOR * 1000
    timeline.set_view_range(600.0, 602.0)
    qtbot.waitUntil(lambda: timeline.detail_image.isVisible(), timeout=10000)
    assert timeline._detail_key[1] == timeline.spectrogram_settings.hop  # full resolution when zoomed in
    assert timeline.level_at(601.0, 1000.0) > -20.0


def test_a_failed_spectrogram_job_is_reported_and_live_columns_stop(qtbot, timeline):
    from studio.workers.spectrogram import SpectrogramJob

    track = AudioTrack(16000, complete=False)
    timeline.set_track(track)
    bad = np.zeros((4096, 2, 2), np.float32)  # not mono audio: the worker's STFT raises
    job = SpectrogramJob("live", timeline._generation, bad, 16000, timeline.spectrogram_settings, 0, 8, 256)
    with qtbot.waitSignal(timeline._service.failed, timeout=5000) as failed:
        timeline._live_pending = True
        timeline._service.submit(job)
    assert failed.args[0] is job and failed.args[1] == "Invalid settings"
    qtbot.waitUntil(lambda: timeline.status_label.text().startswith("spectrogram failed: "), timeout=2000)
    assert "change the spectrogram settings" in timeline.status_label.text()
    track.append(tone(1000.0, 1.0, sr=16000))
    qtbot.wait(200)
    assert timeline._ov_cols == 0  # no more live jobs after a failure …
    timeline.set_spectrogram_settings(SpectrogramSettings(n_fft=512, hop=128))
    wait_spectrogram(qtbot, timeline)  # … until the settings change restarts it
    assert timeline.status_label.text() == ""
