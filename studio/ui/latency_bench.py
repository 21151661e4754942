"""The GUI case of ``studio bench``: event-loop latency of the real window while a model generates and plays.

``measure_gui_latency`` builds the studio's main window (offscreen when ``QT_QPA_PLATFORM=offscreen``),
opens a speech-like test file, loads a model checkpoint through the Models panel's loader, and vocodes
the file with the Generate path the user's button takes (a worker thread generating, the player
playing each block as it comes, the views repainting). Meanwhile a precise 10 ms QTimer on the GUI
thread records how late each tick arrives: that lateness is the event-loop latency a click or a repaint
would see. The result is a dict for ``BenchReport.extras``: p50/p99/max latency in ms, ticks, how much
audio was made and how fast, and whether p99 meets the 30 ms target.

The model: the family's bundled default when there is one, else the training default config with
random weights (as ``studio.engine.bench.sizes.model_for(family, "default")``), saved to a temporary
folder so the window loads it the way it loads any checkpoint. Runs on the calling (GUI) thread.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TICK_MS = 10
TARGET_P99_MS = 30.0


def _wait(app, condition, timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"GUI benchmark: timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.002)


def measure_gui_latency(
    family: str = "wavernn", seconds: float = 3.0, seed: int = 0, size: str = "default"
) -> dict[str, Any]:
    """Event-loop lateness (ms) of the main window while ``family`` vocodes ``seconds`` of audio and plays it."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import soundfile
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer

    from studio.engine.bench.runner import speech_like_signal
    from studio.engine.bench.sizes import model_for
    from studio.engine.checkpoints import save_checkpoint
    from studio.ui.app import create_application
    from studio.ui.mainwindow import MainWindow
    from studio.ui.panels.generate import GenerateParams

    spec = model_for(family, size, seed)
    model = spec.model
    with tempfile.TemporaryDirectory(prefix="studio-bench-gui-") as tmp:
        stem = os.path.join(tmp, f"bench-{family}")
        model.name = f"bench-{family}"
        save_checkpoint(model, stem)
        wav = os.path.join(tmp, "speech.wav")
        soundfile.write(wav, speech_like_signal(int(seconds * model.sample_rate), model.sample_rate, seed),
                        model.sample_rate)  # fmt: skip

        own_settings = os.environ.get("STUDIO_SETTINGS_DIR")
        os.environ["STUDIO_SETTINGS_DIR"] = os.path.join(tmp, "settings")  # leave the person's layout alone
        app = create_application()
        window = MainWindow()
        window.resize(1280, 800)
        window.show()
        try:
            window.open_file(wav)
            _wait(app, lambda: window.current_take is not None, 30, "the test file to open")
            window.load_model(stem, "cpu")
            _wait(app, lambda: window.model is not None, 120, "the model to load")

            lateness: list[float] = []
            clock = QElapsedTimer()
            last = [0]

            def tick() -> None:
                now = clock.nsecsElapsed()
                lateness.append(max(0.0, (now - last[0]) / 1e6 - TICK_MS))
                last[0] = now

            timer = QTimer()
            timer.setTimerType(Qt.TimerType.PreciseTimer)
            timer.setInterval(TICK_MS)
            timer.timeout.connect(tick)
            params = GenerateParams(mode="file", seconds=seconds, seed=seed, temperature=1.0, sigma=0.6, denoise=0.0,
                                    device="cpu")  # fmt: skip
            worker = window.generate(params)
            if worker is None:
                raise RuntimeError(f"GUI benchmark: the window did not start a generation ({window.errors[-1:]})")
            take = window.generation_take
            clock.start()
            last[0] = clock.nsecsElapsed()
            timer.start()
            t0 = time.perf_counter()
            limit = max(30.0, 20 * seconds)
            _wait(app, lambda: window.generation is None or time.perf_counter() - t0 > limit, limit + 30,
                  "the generation to finish")  # fmt: skip
            wall = time.perf_counter() - t0
            # keep measuring while the rest of the take plays (playback runs in real time)
            played_by = min(limit, take.track.num_samples / model.sample_rate + 0.2)
            _wait(app, lambda: time.perf_counter() - t0 >= played_by, limit + 30, "the playback to end")
            measured = time.perf_counter() - t0
            timer.stop()
            if window.generation is not None:
                window.cancel_generation()
                _wait(app, lambda: window.generation is None, 10, "the generation to cancel")
            made = take.track.num_samples
            underflows = getattr(window.player, "underflows", None)
        finally:
            for t in window.unsaved_takes():
                t.saved = True
            window.shutdown()
            window.close()
            window.deleteLater()
            app.processEvents()
            if own_settings is None:
                os.environ.pop("STUDIO_SETTINGS_DIR", None)
            else:
                os.environ["STUDIO_SETTINGS_DIR"] = own_settings

    late = np.asarray(lateness or [0.0])
    p99 = float(np.percentile(late, 99))
    made_s = made / model.sample_rate
    return {
        "name": "gui event loop",
        "family": family,
        "model_source": spec.source,
        "note": spec.note,
        "tick_ms": TICK_MS,
        "ticks": int(len(lateness)),
        "latency_p50_ms": float(np.percentile(late, 50)),
        "latency_p99_ms": p99,
        "latency_max_ms": float(late.max()),
        "audio_seconds": made_s,
        "generation_wall_s": wall,
        "measured_s": measured,
        "realtime": made_s / wall if wall > 0 else None,
        "player_underflows": underflows if isinstance(underflows, int) else None,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 <= TARGET_P99_MS,
        "summary": f"{family} ({spec.source}) vocoding {made_s:.2f} s at {made_s / wall if wall > 0 else 0:.1f}x real time, then playing: event-loop lateness p50 "
        f"{np.percentile(late, 50):.1f} ms, p99 {p99:.1f} ms, max {late.max():.1f} ms over {len(lateness)} ticks "
        f"(target p99 <= {TARGET_P99_MS:g} ms)",
    }
