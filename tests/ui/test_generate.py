"""Load a real tiny model from the catalogue, generate, hear it while it is made, cancel."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from support.saved_models import load_in_window, save_tiny_waveglow, save_tiny_wavenet

from studio.workers.generation import DEFAULT_PROJECTION

pytestmark = pytest.mark.sound


@pytest.fixture
def tiny_model(private_dirs):
    """An unconditional WaveNet of a few thousand parameters, saved in the user models folder."""
    return save_tiny_wavenet(private_dirs / "models")


def test_load_generate_plays_while_generating_and_cancel_keeps_what_was_made(
    qtbot, tiny_model, window, monitor, artifacts_dir
):
    panel = window.models_panel
    panel.refresh_button.click()
    qtbot.waitUntil(lambda: panel.mine.childCount() == 1, timeout=10000)
    assert panel.select_path(tiny_model)
    assert "wavenet" in panel.details.toPlainText() and "16000 Hz" in panel.details.toPlainText()
    panel.load_button.click()
    qtbot.waitUntil(lambda: window.model is not None, timeout=30000)
    assert panel.progress.value() == 100 and "CPU" in panel.state.text()
    assert window.generate_panel.generate_button.isEnabled()

    # far longer than the test lets it run: the tiny model makes 30 s in about 1 s on this machine
    window.generate_panel.seconds.setValue(300.0)
    capture = monitor()
    window.generate_panel.generate_button.click()
    worker = window.generation
    assert worker is not None
    take = window.generation_take
    assert window.current_take is take and not take.track.complete

    def heard() -> bool:
        audio = capture.audio()
        return audio.shape[0] > 0 and float(np.sqrt(np.mean(audio[-4800:] ** 2))) > 0.01

    qtbot.waitUntil(lambda: take.track.num_samples > 4000 and heard(), timeout=30000)
    assert window.generation is worker, "generation ended before the test could hear it"
    qtbot.waitUntil(lambda: window.timeline.wave_curve.xData is not None and window.timeline.wave_curve.xData.max() > 0.2)
    qtbot.waitUntil(lambda: window.generate_panel.progress.value() > 0, timeout=10000)  # 0.1 % steps
    assert window.generate_panel.progress.value() > 0 and "real time" in window.generate_panel.readout.text()
    window.grab().save(os.path.join(artifacts_dir, "main-window-generating.png"))

    made_before = take.track.num_samples
    t0 = time.perf_counter()
    window.generate_panel.cancel_button.click()
    qtbot.waitUntil(lambda: window.generation is None, timeout=5000)
    gui_latency = time.perf_counter() - t0
    capture.stop()
    assert worker.cancel_latency_s is not None and worker.cancel_latency_s < 0.2
    assert gui_latency < 1.0  # queued signals on a loaded 2-core machine
    assert take.track.complete and take.track.num_samples >= made_before
    assert take.track.num_samples < 300 * 16000 and not take.saved
    assert window.generate_panel.generate_button.isEnabled()
    assert "Cancelled" in window.statusBar().currentMessage()


def test_the_denoiser_is_offered_only_to_waveglows_it_helps(qtbot, window, private_dirs):
    """A waveform WaveGlow takes the bias denoiser; an LPC WaveGlow (which refuses it) greys it out,
    says why, and sends 0 whatever the box held."""
    plain = save_tiny_waveglow(private_dirs / "models", "tiny-waveglow")
    with_lpc = save_tiny_waveglow(private_dirs / "models", "tiny-lpc-waveglow", lpc_order=16)
    generate = window.generate_panel
    load_in_window(qtbot, window, plain, listed=2)
    assert generate.denoise.isEnabled() and generate.sigma.isEnabled()
    generate.denoise.setValue(0.2)
    assert generate.params().denoise == pytest.approx(0.2)
    load_in_window(qtbot, window, with_lpc, listed=2)
    assert not generate.denoise.isEnabled() and generate.sigma.isEnabled()
    assert "LPC" in generate.denoise.toolTip()
    assert generate.params().denoise == 0.0
    assert not window.model.model.supports_denoise


def test_vocoding_a_selection_lines_the_result_up_with_its_source(qtbot, window, private_dirs, tone_file):
    """Vocode 0.5–1.25 s of an open file with a real (untrained) mel-conditioned WaveGlow: the result's
    source is the file, starting 0.5 s into it, and the compare lane shows the file from there."""
    path = save_tiny_waveglow(private_dirs / "models", "tiny-waveglow")
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        window.open_file(tone_file)
    source = opened.args[0]
    load_in_window(qtbot, window, path)
    window.timeline.set_selection(0.5, 1.25)
    window.generate_panel.set_mode("selection")
    window.generate_panel.generate_button.click()
    made = window.generation_take
    assert made is not None
    qtbot.waitUntil(lambda: window.generation is None, timeout=30000)
    assert made.source is source and made.source_offset_s == pytest.approx(0.5)
    assert abs(made.track.duration_s - 0.75) < 0.05
    window.stop()  # else the playhead follows the playback of the result
    window.show_take(made)
    assert window.compare.take is source and window.compare.offset_s == pytest.approx(0.5)
    window.timeline.set_playhead(0.1)
    qtbot.waitUntil(lambda: abs(window.compare.timeline.playhead - 0.6) < 1e-6, timeout=2000)
    assert window.compare.timeline.view_range()[0] == pytest.approx(window.timeline.view_range()[0] + 0.5)


def test_the_projection_box_follows_the_model_and_brings_the_output_to_the_source(qtbot, window, private_dirs):
    """An untrained WaveGlow makes noise; with the box checked the same vocoding comes out with the
    source's mel (real speech), and a model whose card sets a projection starts with the box checked."""
    from studio.engine.audio.features import PRESETS, compute_mel

    speech = Path(__file__).resolve().parent.parent / "data" / "voice_clips" / "ru-ru_0839.flac"
    plain = save_tiny_waveglow(private_dirs / "models", "tiny-waveglow")
    with_projection = save_tiny_waveglow(private_dirs / "models", "tiny-projected-waveglow", projection=8)
    with qtbot.waitSignal(window.takeOpened, timeout=10000) as opened:
        window.open_file(str(speech))
    source = opened.args[0]
    generate = window.generate_panel
    load_in_window(qtbot, window, plain, listed=2)
    assert generate.projection.isEnabled() and not generate.projection.isChecked()
    assert generate.params().projection is None
    profile = PRESETS["speech16k"]

    def vocode() -> float:
        """Vocode 0.5-2 s of the speech; the mean ln-mel distance of the result from that stretch's."""
        window.show_take(source)
        window.timeline.set_selection(0.5, 2.0)
        generate.set_mode("selection")
        generate.generate_button.click()
        made = window.generation_take
        qtbot.waitUntil(lambda: window.generation is None, timeout=30000)
        window.stop()
        wanted = compute_mel(source.track.samples[int(0.5 * source.sample_rate) : int(2.0 * source.sample_rate)], profile)
        got = compute_mel(made.track.samples, profile)
        n = min(wanted.shape[-1], got.shape[-1])
        assert n > 100
        return float(np.abs(np.asarray(wanted)[:, :n] - np.asarray(got)[:, :n]).mean())

    noise = vocode()
    generate.projection.setChecked(True)
    assert generate.params().projection == DEFAULT_PROJECTION
    projected = vocode()
    assert projected < 0.3 * noise, (projected, noise)
    load_in_window(qtbot, window, with_projection, listed=2)
    assert generate.projection.isChecked() and generate.params().projection == 8
