"""The Convert panel with real audio: record speech from the sink's monitor, convert it +4 semitones,
A/B against the source, save; convert to a bundled voice; run live mode briefly through PulseAudio."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import espeak, voiced_median_f0

pytest.importorskip("pyworld", reason="voice conversion needs the voice extra (pyworld)")
pytestmark = pytest.mark.sound

SHIFT = 4.0
ROOT = Path(__file__).resolve().parents[2]


def record_speech(qtbot, window, wav: str):
    """Record (R) while paplay plays ``wav`` into test_sink; returns the recorded take."""
    window.activateWindow()
    window.toggle_recording()
    assert window.recorder is not None
    qtbot.wait(200)
    player = subprocess.Popen(["paplay", "-d", "test_sink", wav])
    try:
        player.wait(20)
    finally:
        if player.poll() is None:
            player.terminate()
    qtbot.wait(250)
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        window.toggle_recording()
    return opened.args[0]


def convert_and_wait(qtbot, window):
    with qtbot.waitSignal(window.takeOpened, timeout=60000) as opened:
        window.convert_panel.convert_button.click()
        assert window.conversion.worker is not None and window.convert_panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: window.conversion.worker is None, timeout=10000)
    return opened.args[0]


@pytest.mark.slow
def test_convert_a_recorded_take_up_four_semitones_ab_and_save(qtbot, window, tmp_path, artifacts_dir):
    wav = espeak(tmp_path / "speech.wav", "Seven silver swans swam silently seaward, one after another.")
    recording = record_speech(qtbot, window, wav)
    assert recording.kind == "recording" and recording.track.duration_s > 2.0

    panel = window.convert_panel
    window.convert_dock.raise_()
    assert {"ru", "allison"} <= set(panel.voice_names()), "the bundled voices are listed"
    panel.set_source("recording")
    panel.pitch.setValue(SHIFT)
    converted = convert_and_wait(qtbot, window)
    assert converted.kind == "conversion" and converted.source is recording and not converted.saved
    assert window.current_take is converted
    assert abs(converted.track.duration_s - recording.track.duration_s) < 0.01 * recording.track.duration_s + 0.02
    f0_in = voiced_median_f0(recording.track.samples, recording.sample_rate)
    f0_out = voiced_median_f0(converted.track.samples, converted.sample_rate)
    moved = 12 * np.log2(f0_out / f0_in)
    print(f"window conversion: median F0 {f0_in:.1f} → {f0_out:.1f} Hz = {moved:+.2f} st")
    assert abs(moved - SHIFT) < 0.5
    assert "pitch +4 st" in panel.readout.text()
    qtbot.wait(300)
    window.grab().save(os.path.join(artifacts_dir, "main-window-convert.png"))

    # beside its source: the compare lane under the views shows the recording on the same stretch of time
    lane = window.compare
    assert lane.isVisible() and lane.take is recording and lane.offset_s == 0.0
    assert lane.timeline.track is recording.track and "compare · " + recording.name in lane.caption.text()
    window.timeline.set_view_range(0.5, 1.5)
    window.timeline.set_playhead(1.0)
    qtbot.waitUntil(lambda: abs(lane.timeline.view_range()[0] - 0.5) < 1e-6 and abs(lane.timeline.playhead - 1.0) < 1e-6,
                    timeout=2000)
    assert abs(lane.timeline.view_range()[1] - 1.5) < 1e-6

    # A/B: the source at the same moment, then back; the lane shows the other one of the pair
    window.takes_panel.ab_button.click()
    assert window.current_take is recording and abs(window.timeline.playhead - 1.0) < 1e-6
    assert lane.take is converted and lane.isVisible()
    window.takes_panel.ab_button.click()
    assert window.current_take is converted and lane.take is recording
    window.compare_action.trigger()  # off: the views alone
    assert not window.compare_action.isChecked() and not lane.isVisible() and lane.take is None
    window.compare_action.trigger()
    assert lane.isVisible() and lane.take is recording

    out = str(tmp_path / "converted.flac")
    saved = []
    window.save_take(converted, out, on_saved=lambda: saved.append(True))
    qtbot.waitUntil(lambda: saved == [True], timeout=10000)
    back, rate = sf.read(out, dtype="float32")
    assert rate == converted.sample_rate and back.shape[0] == converted.track.num_samples and converted.saved

    # to a bundled voice: the result is at the voice's rate and holds sound
    panel.voice.setCurrentIndex(panel.voice.findData("allison"))
    panel.pitch.setValue(0.0)
    panel.set_source("take")
    window.show_take(recording)
    to_voice = convert_and_wait(qtbot, window)
    assert to_voice.sample_rate == 16000 and to_voice.source is recording
    assert float(np.sqrt(np.mean(to_voice.track.samples**2))) > 0.01

    # to the ru voice, rendered by the vocoder trained on that speaker: the mel vocoders are offered, free music is not
    bundled = tmp_path / "bundled"  # the window's private bundled-models folder (conftest.private_dirs)
    bundled.mkdir(exist_ok=True)
    for name in ("speech-wavernn", "music-wavenet"):
        for suffix in (".json", ".safetensors"):
            shutil.copy(ROOT / "resources" / "models" / f"{name}{suffix}", bundled)
    window.refresh_models()
    qtbot.waitUntil(lambda: panel.render.count() > 1, timeout=10000)
    offered = [panel.render.itemData(i) for i in range(panel.render.count())]
    assert offered == ["world", "speech-wavernn"]
    panel.voice.setCurrentIndex(panel.voice.findData("ru"))
    panel.render.setCurrentIndex(panel.render.findData("speech-wavernn"))
    window.show_take(recording)
    rendered = convert_and_wait(qtbot, window)
    assert rendered.sample_rate == 16000 and rendered.track.num_samples == to_voice.track.num_samples
    assert float(np.sqrt(np.mean(rendered.track.samples**2))) > 0.01
    assert not np.allclose(rendered.track.samples, to_voice.track.samples, atol=1e-3)
    assert "vocoder:speech-wavernn" in panel.readout.text()
    assert window.errors == []


def test_convert_explains_what_is_missing(qtbot, window):
    with qtbot.waitSignal(window.errorShown, timeout=2000) as shown:
        window.convert_panel.convert_button.click()
    assert "open a file" in shown.args[1]
    window.convert_panel.set_source("recording")
    with qtbot.waitSignal(window.errorShown, timeout=2000) as shown:
        window.convert_panel.convert_button.click()
    assert "record a take" in shown.args[1]
    assert window.conversion.worker is None and window.convert_panel.convert_button.isEnabled()


@pytest.mark.slow
def test_live_section_starts_shows_readouts_and_stops(qtbot, window, pulse_server, tmp_path, artifacts_dir):
    wav = espeak(tmp_path / "live.wav", "Live conversion runs while you speak into the microphone.")
    panel = window.convert_panel
    window.convert_dock.raise_()
    panel.pitch.setValue(SHIFT)
    pulse_server.use_sources("test_sink", "mic_sink.monitor")  # the converter hears mic_sink, plays to test_sink
    player = None
    try:
        panel.live_button.click()
        assert window.conversion.live_state == "starting" and not panel.hop.isEnabled()
        qtbot.waitUntil(lambda: window.conversion.live_state == "running", timeout=10000)
        player = subprocess.Popen(["paplay", "-d", "mic_sink", wav])
        qtbot.waitUntil(lambda: window.conversion.live.stats().hops > 40, timeout=15000)
        qtbot.wait(400)
        stats = window.conversion.last_live_stats
        assert stats is not None and stats.error is None
        assert "ms" in panel.live_latency.text() and "ms" in panel.live_inference.text()
        assert "%" in panel.live_headroom.text() and "underruns" in panel.live_underruns.text()
        assert "device underflows" in panel.live_underruns.text() and "input overflows" in panel.live_underruns.text()
        assert stats.hop_ms == 20, "auto block: 20 ms for the own voice's transforms"
        window.grab().save(os.path.join(artifacts_dir, "main-window-live.png"))
        player.wait(20)
        panel.live_button.click()
        qtbot.waitUntil(lambda: window.conversion.live_state == "stopped", timeout=10000)
    finally:
        if player is not None and player.poll() is None:
            player.terminate()
        if window.conversion.live is not None:
            window.conversion.stop_live(keep_take=False)
            qtbot.waitUntil(lambda: window.conversion.live_state == "stopped", timeout=10000)
        pulse_server.use_sources("test_sink", "test_sink.monitor")
    final = window.conversion.last_live_stats
    print(f"window live run: {final}")
    assert final.error is None and final.hops > 40 and final.hops > final.gated_hops
    assert window.errors == []
    assert panel.hop.isEnabled() and panel.live_button.text().startswith("▶")
    take = window.current_take
    assert take is not None and take.kind == "conversion" and take.name.startswith("live")
    assert float(np.max(np.abs(take.track.samples))) > 0.01


def test_voices_are_listed_with_the_models_and_loading_one_makes_it_the_target(qtbot, window):
    """The Models panel lists the voices (here the bundled ru and allison) in their own group; Load on
    one makes it the Convert panel's target and brings that panel forward, without loading a model."""
    models = window.models_panel
    qtbot.waitUntil(lambda: models.voices.childCount() == 2, timeout=10000)
    assert models.voices.text(0) == "Voices (2)"
    assert window.convert_panel.voice.currentData() != "allison"
    assert models.select_voice("allison") and models.load_button.isEnabled()
    details = models.details.toPlainText()
    assert "female US English" in details and "192 Hz" in details and "allison.voice.json" in details
    window.generate_dock.raise_()
    models.load_button.click()
    assert window.convert_panel.voice.currentData() == "allison"
    assert "allison" in models.state.text() and window.model is None
    qtbot.waitUntil(lambda: not window.convert_dock.visibleRegion().isEmpty(), timeout=2000)
    assert window.generate_dock.visibleRegion().isEmpty()
    assert not models.select_voice("nobody")


def test_the_compare_partner_of_a_take_and_of_its_source_during_ab():
    """Pure logic: a take made from a selection starting 1.5 s into its source is compared with the
    source 1.5 s later; while A/B shows the source, with the take 1.5 s earlier; lone takes have none."""
    from studio.ui.compare import pair_partner
    from studio.ui.takes import Take

    source = Take("speech", track=None, kind="recording")
    made = Take("speech +4 st", track=None, kind="conversion", source=source, source_offset_s=1.5)
    other = Take("tone", track=None, kind="file")
    assert pair_partner(made, made) == (source, 1.5)
    assert pair_partner(source, made) == (made, -1.5)
    assert pair_partner(source, other) is None and pair_partner(other, other) is None and pair_partner(None, made) is None


def test_the_speaker_of_a_take_can_be_named_and_conversion_maps_from_their_voice(qtbot, window, tmp_path):
    """Convert panel → speaker: naming the voice of whoever speaks (here the bundled allison voice for a
    held-out Allison prompt) makes the conversion to ru map from that voice's statistics, not the
    take's own: another result, said in the readout; the choice is offered only for a target voice
    and survives a restart (QSettings)."""
    from PySide6.QtCore import QSettings

    clip = sorted((ROOT / "tests" / "data" / "voice_clips").glob("allison-*.flac"))[0]
    with qtbot.waitSignal(window.takeOpened, timeout=10000):
        window.open_file(str(clip))
    panel = window.convert_panel
    qtbot.waitUntil(lambda: "allison" in panel.voice_names(), timeout=10000)
    assert panel.speaker.currentData() == "" and not panel.speaker.isEnabled()  # own voice: nothing to map from
    assert panel.select_voice("ru") and panel.speaker.isEnabled()
    measured = convert_and_wait(qtbot, window)
    assert "from" not in panel.readout.text().splitlines()[0]
    assert panel.select_speaker("allison") and panel.params().speaker == "allison"
    window.show_take(measured.source)
    named = convert_and_wait(qtbot, window)
    assert "voice ru from allison" in panel.readout.text()
    assert named.track.num_samples == measured.track.num_samples
    assert not np.allclose(named.track.samples, measured.track.samples, atol=1e-3)
    assert not panel.select_speaker("nobody")

    store = QSettings(str(tmp_path / "convert.ini"), QSettings.Format.IniFormat)
    panel.save_state(store)
    assert panel.select_speaker("") and panel.speaker.currentData() == ""
    panel.restore_state(store)
    panel.set_voices([("allison", "a"), ("ru", "r")])  # the voices are listed after a restore
    assert panel.speaker.currentData() == "allison" and panel.voice.currentData() == "ru"
    assert window.errors == []
