"""The Train panel: train a tiny WaveNet a few steps on espeak-ng speech from the window, see the loss
plot fill, find the model in the Models panel; the GUI keeps running its timers meanwhile; Cancel
stops a long run and keeps a checkpoint that is listed too."""

from __future__ import annotations

import json
import os
import time

import pytest
from PySide6.QtCore import QTimer
from support.tiny_training import TINY_WAVENET, make_speech_folder

TICK_MS = 10
GUI_GAP_BOUND_S = 1.0  # only catches a frozen GUI; the measured gap is printed


class TickGaps:
    """Measures the longest gap between ticks of a 10 ms QTimer on the GUI thread (seconds)."""

    def __init__(self) -> None:
        self.last = None
        self.max_gap = 0.0
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def fill_panel(window, folder, name: str, steps: int) -> None:
    panel = window.train_panel
    panel.from_folder.setChecked(True)
    panel.folder.setText(str(folder))
    panel.family.setCurrentText("wavenet")
    assert panel.profile.currentText() == "speech16k", "the family's default profile is chosen"
    panel.steps.setValue(steps)
    panel.batch.setValue(2)
    panel.name.setText(name)
    panel.config.setText(json.dumps(TINY_WAVENET))


def mine(window) -> list[str]:
    group = window.models_panel.mine
    return [group.child(i).data(0, 256) for i in range(group.childCount())]  # 256 = Qt.UserRole


@pytest.mark.slow
def test_train_a_tiny_wavenet_from_the_window_then_cancel_a_long_run(qtbot, window, tmp_path, private_dirs, artifacts_dir):
    speech = make_speech_folder(tmp_path / "speech")
    window.train_dock.raise_()
    qtbot.waitUntil(lambda: window.training.warm_s is not None, timeout=30000)  # one-time lazy torch imports
    fill_panel(window, speech, "tiny-from-window", steps=8)
    gaps = TickGaps()
    gaps.start()
    window.train_panel.train_button.click()
    worker = window.training.worker
    assert worker is not None and not window.train_panel.train_button.isEnabled()
    qtbot.waitUntil(lambda: window.training.worker is None, timeout=90000)
    gaps.stop()
    result = window.training.last_result
    print(f"GUI during training: longest gap between {TICK_MS} ms timer ticks {gaps.max_gap * 1000:.0f} ms "
          f"over {gaps.ticks} ticks; run took {result.wall_s:.1f} s (imports warmed in {window.training.warm_s:.2f} s)")
    assert window.errors == []
    assert result.status == "completed" and result.step == 8
    assert gaps.ticks > 10 and gaps.max_gap < GUI_GAP_BOUND_S
    stem = str(private_dirs / "models" / "tiny-from-window")
    assert os.path.isfile(stem + ".safetensors") and os.path.isfile(stem + ".json")
    qtbot.waitUntil(lambda: stem in mine(window), timeout=10000)
    assert window.models_panel.tree.currentItem().data(0, 256) == stem, "the new model is selected"
    panel = window.train_panel
    assert len(panel.losses) >= 2 and panel.steps_seen[-1] == 8
    assert len(panel.heldout_losses) >= 2, "held-out loss is plotted at the start and at evaluations"
    assert panel.progress.value() == 1000 and "steps/s" in panel.readout.text() or "Finished" in panel.readout.text()
    window.grab().save(os.path.join(artifacts_dir, "main-window-train.png"))

    # a long run: Cancel stops it after the current step and keeps a checkpoint, listed in Models
    fill_panel(window, speech, "tiny-cancelled", steps=100000)
    panel.train_button.click()
    qtbot.waitUntil(lambda: len(panel.steps_seen) > 0 and panel.steps_seen[-1] >= 3, timeout=60000)
    assert "left" in panel.readout.text()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: window.training.worker is None, timeout=30000)
    result = window.training.last_result
    assert result.status == "cancelled" and 3 <= result.step < 100000
    cancelled = str(private_dirs / "models" / "tiny-cancelled")
    qtbot.waitUntil(lambda: cancelled in mine(window), timeout=10000)
    # the trained model loads like any other
    window.load_model(cancelled)
    qtbot.waitUntil(lambda: window.model is not None, timeout=30000)
    assert window.model.model.card().training.get("steps") == result.step
    assert window.errors == []


def test_train_refuses_unusable_settings_with_a_message(qtbot, window, tmp_path):
    panel = window.train_panel
    panel.from_folder.setChecked(True)
    panel.folder.setText("")
    with qtbot.waitSignal(window.errorShown, timeout=2000) as shown:
        panel.train_button.click()
    assert "folder" in shown.args[1]
    panel.from_takes.setChecked(True)
    with qtbot.waitSignal(window.errorShown, timeout=2000) as shown:
        panel.train_button.click()
    assert "no finished takes" in shown.args[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    panel.from_folder.setChecked(True)
    panel.folder.setText(str(empty))
    panel.steps.setValue(2)
    with qtbot.waitSignal(window.errorShown, timeout=30000) as shown:
        panel.train_button.click()
    assert "no audio files" in shown.args[1]
    qtbot.waitUntil(lambda: window.training.worker is None, timeout=10000)
    assert panel.train_button.isEnabled()


@pytest.mark.slow
def test_train_panel_offers_free_generation_and_speakers_where_the_family_has_them(qtbot, window, tmp_path, private_dirs):
    """Free generation (no mel) and one speaker per sub-folder, from the window: the saved model's card
    says so; a vocoder-only family refuses free generation and disables the choice once families are known."""
    speakers = tmp_path / "speakers"
    make_speech_folder(speakers / "bob")
    make_speech_folder(speakers / "alice")
    window.train_dock.raise_()
    qtbot.waitUntil(lambda: window.training.warm_s is not None, timeout=30000)
    panel = window.train_panel
    panel.family.setCurrentText("waveglow")
    assert not panel.free.isEnabled() and not panel.speakers.isEnabled(), "WaveGlow is a vocoder with no speakers"
    fill_panel(window, speakers, "tiny-free-speakers", steps=3)
    assert panel.free.isEnabled() and panel.speakers.isEnabled()
    panel.free.setChecked(True)
    panel.speakers.setChecked(True)
    panel.from_takes.setChecked(True)
    assert not panel.speakers.isEnabled(), "the open takes have no speaker folders"
    panel.from_folder.setChecked(True)
    assert panel.speakers.isEnabled()
    panel.train_button.click()
    qtbot.waitUntil(lambda: window.training.worker is None, timeout=90000)
    assert window.errors == []
    result = window.training.last_result
    assert result.status == "completed" and result.step == 3
    card = json.loads((private_dirs / "models" / "tiny-free-speakers.json").read_text())["card"]
    assert card["conditioning"] == "none" and card["config"]["n_mels"] == 0
    assert card["config"]["n_speakers"] == 2 and card["training"]["speakers"] == ["alice", "bob"]

    # a folder without speaker sub-folders: a clear message, nothing trained
    flat = make_speech_folder(tmp_path / "flat")
    panel.folder.setText(str(flat))
    panel.name.setText("tiny-flat")
    with qtbot.waitSignal(window.errorShown, timeout=10000) as shown:
        panel.train_button.click()
    assert "sub-folder" in shown.args[1]
    assert window.training.worker is None and not (private_dirs / "models" / "tiny-flat.json").exists()
