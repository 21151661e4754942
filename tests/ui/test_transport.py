"""Transport with real audio: play selection, loop, output device change; and a window that fits small screens."""

from __future__ import annotations

import pytest

from .conftest import dominant_frequency

pytestmark = pytest.mark.sound


def open_and_wait(qtbot, window, path):
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        window.open_file(path)
    return opened.args[0]


def test_play_selection_stops_at_its_end_and_loop_repeats_it(qtbot, window, tone_file):
    open_and_wait(qtbot, window, tone_file)
    window.timeline.set_selection(0.5, 0.9)
    window.transport.play_selection.click()
    assert window.is_playing()
    seen = []
    qtbot.waitUntil(lambda: (seen.append(window.timeline.playhead), not window.is_playing())[1], timeout=5000)
    assert min(seen) >= 0.5 - 1e-6 and max(seen) <= 0.9 + 0.05, "the playhead stayed inside the selection"
    assert max(seen) > 0.6

    window.transport.loop.click()  # loop on: the selection repeats until stopped
    assert window.transport.loop.isChecked()
    window.transport.play_selection.click()
    positions = []
    qtbot.waitUntil(lambda: (positions.append(window.timeline.playhead), len(positions) > 40)[1], timeout=5000)
    qtbot.wait(900)  # more than two lengths of the selection
    assert window.is_playing(), "a looped selection keeps playing"
    positions.append(window.timeline.playhead)
    assert window.player.loop is not None
    wrapped = any(b < a - 0.1 for a, b in zip(positions, positions[1:], strict=False))
    assert wrapped and all(0.5 - 1e-6 <= p <= 0.95 for p in positions)
    window.stop()
    assert not window.is_playing()


def test_output_device_change_plays_there_and_is_remembered(qtbot, window, tone_file, monitor):
    combo = window.transport.output_device
    names = [combo.itemText(i) for i in range(combo.count())]
    assert names[0] == "default"
    other = next((n for n in names if n == "pulse"), None) or next((n for n in names[1:]), None)
    if other is None:
        pytest.skip(f"only one output device: {names}")
    open_and_wait(qtbot, window, tone_file)
    combo.setCurrentText(other)
    combo.activated.emit(combo.currentIndex())
    assert window.output_device == other and window.settings.value("audio/output_device") == other
    capture = monitor()
    window.play_from(0.0)
    qtbot.waitUntil(lambda: window.timeline.playhead > 0.8, timeout=10000)
    audio = capture.stop()
    window.stop()
    freq, snr = dominant_frequency(audio, 48000)
    assert abs(freq - 1000.0) < 5.0 and snr > 30.0, f"the tone did not reach the sink through {other!r}"

    # a device that is gone: the engine falls back to the default device; the status bar names it
    window.set_output_device("no-such-device")
    window.play_from(0.0)
    qtbot.waitUntil(lambda: window.timeline.playhead > 0.2, timeout=10000)
    window._poll()
    assert window.player.device_name and window.status_device.text() == window.player.device_name
    assert "no-such-device" not in window.status_device.text()
    window.stop()


def test_window_fits_a_small_screen(make_window):
    window = make_window(size=(1024, 600))
    hint = window.minimumSizeHint()
    print(f"minimum window size {hint.width()}×{hint.height()}")
    assert hint.width() <= 1024 and hint.height() <= 600, f"minimum size {hint.width()}×{hint.height()}"
    assert abs(window.width() - 1024) <= 1 and abs(window.height() - 600) <= 1
