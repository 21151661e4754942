"""The main window with real audio: open → views → play to the sink; record from the monitor;
drag and drop; settings across restarts; worker errors; screenshots."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from .conftest import dominant_frequency, tone

pytestmark = pytest.mark.sound
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def open_and_wait(qtbot, window, path):
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        window.open_file(path)
    return opened.args[0]


def test_open_play_reaches_the_sink_and_the_playhead_moves(qtbot, window, tone_file, monitor, artifacts_dir):
    take = open_and_wait(qtbot, window, tone_file)
    assert take.kind == "file" and take.track.num_samples == 96000
    timeline = window.timeline
    qtbot.waitUntil(lambda: timeline._ov_ready and timeline._ov_cols > 0, timeout=10000)
    qtbot.waitUntil(lambda: timeline.wave_curve.yData is not None and len(timeline.wave_curve.yData) > 0)
    assert timeline.level_at(1.0, 1000.0) - timeline.level_at(1.0, 3000.0) > 40.0
    assert window.recent_files()[0] == os.path.abspath(tone_file)

    capture = monitor()
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: timeline.playhead > 0.6, timeout=10000)
    assert window.transport.time.text().startswith("00:00.") and window.transport.playing
    timeline.set_selection(0.5, 1.5)
    qtbot.wait(150)
    window.grab().save(os.path.join(artifacts_dir, "main-window-playing.png"))
    audio = capture.stop()
    heard = audio[np.abs(audio) > 0.05]
    assert heard.shape[0] > 4800, "the tone did not reach test_sink"
    freq, snr = dominant_frequency(audio, 48000)
    assert abs(freq - 1000.0) < 5.0 and snr > 30.0
    window.stop()
    assert not window.is_playing()


def test_record_from_the_monitor_while_a_tone_plays(qtbot, window, tmp_path, artifacts_dir):
    wav = os.path.join(tmp_path, "880.wav")
    sf.write(wav, tone(880.0, 4.0, amp=0.4), 48000, subtype="PCM_16")
    player = subprocess.Popen(["paplay", "-d", "test_sink", wav])
    try:
        qtbot.wait(300)
        window.activateWindow()
        qtbot.keyClick(window, Qt.Key.Key_R)
        assert window.recorder is not None
        qtbot.waitUntil(lambda: window.recorder.elapsed_s > 1.2, timeout=10000)
        window._poll()
        assert window.record_panel.curve.yData is not None and np.abs(window.record_panel.curve.yData).max() > 0.2
        assert "overflows" in window.record_panel.overflows.text()
        window.grab().save(os.path.join(artifacts_dir, "main-window-recording.png"))
        with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
            qtbot.keyClick(window, Qt.Key.Key_R)
    finally:
        player.terminate()
        player.wait(5)
    take = opened.args[0]
    assert take.kind == "recording" and os.path.isfile(take.path) and window.last_recording is take
    samples = take.track.samples
    assert take.track.duration_s > 1.0
    loud = samples[np.abs(samples) > 0.1]
    assert loud.shape[0] > 0.5 * take.sample_rate
    freq, snr = dominant_frequency(samples, take.sample_rate)
    assert abs(freq - 880.0) < 5.0 and snr > 30.0


@pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")
def test_drop_a_file_opens_it(qtbot, window, tone_file):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(tone_file)])
    pos = QPoint(window.width() // 2, window.height() // 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        QApplication.sendEvent(window, drop)
    assert opened.args[0].path == os.path.abspath(tone_file)
    # something that is not audio is refused at the door
    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(__file__)])
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, other, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter.setAccepted(False)
    QApplication.sendEvent(window, enter)
    assert not enter.isAccepted()


def test_settings_survive_a_restart(qtbot, make_window, tone_file, private_dirs):
    bundled = private_dirs / "bundled"  # one mel vocoder there, so the convert panel's renderer can be chosen
    bundled.mkdir(exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(Path(__file__).resolve().parents[2] / "resources" / "models" / f"speech-wavenet{suffix}", bundled)
    first = make_window(size=None)
    render = first.convert_panel.render
    qtbot.waitUntil(lambda: render.count() == 2, timeout=10000)
    render.setCurrentIndex(render.findData("speech-wavenet"))
    first.view_settings.fft.setCurrentText("2048")
    first.view_settings.scale.setCurrentText("log")
    first.view_settings.colormap.setCurrentText("magma")
    first.removeDockWidget(first.models_dock)
    first.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, first.models_dock)
    first.models_dock.show()
    first.generate_panel.seed.setValue(1234)
    open_and_wait(qtbot, first, tone_file)
    size = (first.width(), first.height())
    assert first.timeline.spectrogram_settings.n_fft == 2048
    first.close()
    qtbot.waitUntil(lambda: not first.isVisible())

    second = make_window(size=None)
    spec = second.timeline.spectrogram_settings
    assert (spec.n_fft, spec.scale, spec.colormap) == (2048, "log", "magma")
    assert second.view_settings.fft.currentText() == "2048"
    assert second.dockWidgetArea(second.models_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    # the offscreen screen is only 800 px square and Qt fits a restored window into the screen (and
    # our minimum size), so only check that the geometry was stored for the next start
    assert len(bytes(second.settings.value("window/geometry"))) > 40 and size != (0, 0)
    assert second.generate_panel.seed.value() == 1234
    qtbot.waitUntil(lambda: second.convert_panel.render.count() == 2, timeout=10000)  # the models are listed in a worker
    assert second.convert_panel.render.currentData() == "speech-wavenet"
    assert second.recent_files()[0] == os.path.abspath(tone_file)
    assert second.recent_menu.actions()[0].text() == os.path.basename(tone_file)


def test_worker_errors_become_messages_and_the_window_stays_usable(qtbot, window, tmp_path, tone_file):
    broken = os.path.join(tmp_path, "broken.wav")
    with open(broken, "wb") as fh:
        fh.write(b"RIFF\x00\x00\x00\x00WAVEnot really audio at all" * 10)
    with qtbot.waitSignal(window.errorShown, timeout=10000) as shown:
        window.open_file(broken)
    title, message = shown.args
    assert "audio file" in title.lower() and "broken.wav" in message
    assert window.error_box is not None and window.error_box.isVisible()

    def explode():
        raise RuntimeError("the worker fell over")

    with qtbot.waitSignal(window.errorShown, timeout=10000) as shown:
        window.run_function(explode)
    assert "the worker fell over" in shown.args[1] and "still usable" in shown.args[1]
    # generating without a model explains what to do
    with qtbot.waitSignal(window.errorShown, timeout=2000) as shown:
        window.generate(window.generate_panel.params())
    assert "Load" in shown.args[1]
    take = open_and_wait(qtbot, window, tone_file)  # still works
    assert take.track.num_samples == 96000


def test_unsaved_take_prompts_before_closing(qtbot, window, tmp_path):
    from studio.ui.takes import Take
    from studio.ui.views.track import AudioTrack

    take = Take("made", AudioTrack(16000, tone(300.0, 0.5, sr=16000)), "generation", saved=False)
    window.add_take(take)
    answers = []

    def answer_cancel():
        box = QApplication.activeModalWidget()
        answers.append(box.objectName() if box else None)
        if box is not None:
            box.button(box.StandardButton.Cancel).click()

    from PySide6.QtCore import QTimer

    QTimer.singleShot(200, answer_cancel)
    window.close()
    assert answers == ["unsaved-prompt"] and window.isVisible()
    out = os.path.join(tmp_path, "made.flac")
    done = []
    window.save_take(take, out, on_saved=lambda: done.append(True))
    qtbot.waitUntil(lambda: done == [True], timeout=10000)
    back, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and back.shape[0] == 8000 and take.saved
    assert window.unsaved_takes() == []


def test_screenshot_of_the_main_window(qtbot, window, tone_file, artifacts_dir):
    take = open_and_wait(qtbot, window, tone_file)
    chirp = np.concatenate([tone(f, 0.25, amp=0.35) for f in (300, 600, 1200, 2400, 4800, 2400, 1200, 600)])
    path = os.path.join(os.path.dirname(tone_file), "steps.wav")
    sf.write(path, chirp, 48000)
    take = open_and_wait(qtbot, window, path)
    window.timeline.set_selection(0.5, 1.25)
    window.timeline.set_playhead(0.8)
    qtbot.waitUntil(lambda: window.timeline._ov_ready and window.timeline._ov_cols > 0, timeout=10000)
    qtbot.wait(200)
    out = os.path.join(artifacts_dir, "main-window.png")
    assert window.grab().save(out)
    docs = os.path.join(REPO, "docs", "screenshots")
    os.makedirs(docs, exist_ok=True)
    shutil.copyfile(out, os.path.join(docs, "main-window.png"))
    assert os.path.getsize(out) < 150_000 and take.track.num_samples == chirp.shape[0]
