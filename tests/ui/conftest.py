"""Fixtures for the window tests: private settings, model and recording folders; a themed app;
a main window that is shut down (audio, timers, workers) after each test; test signals on disk."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Settings, user models, voices and recordings in temporary folders, never the person's own."""
    monkeypatch.setenv("STUDIO_SETTINGS_DIR", str(tmp_path / "settings"))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(tmp_path / "bundled"))
    monkeypatch.setenv("STUDIO_RECORDINGS_DIR", str(tmp_path / "recordings"))
    monkeypatch.setenv("STUDIO_VOICES_DIR", str(tmp_path / "voices"))
    return tmp_path


@pytest.fixture
def studio_app(qapp):
    from studio.ui.app import create_application

    return create_application()


@pytest.fixture
def make_window(qtbot, studio_app, pulse_server):
    """Factory for main windows; each is shut down at the end of the test (no unsaved-take prompt)."""
    from studio.ui.mainwindow import MainWindow

    windows = []

    def make(size=(1280, 800)):
        window = MainWindow()  # not qtbot.addWidget: its close at teardown would meet the unsaved prompt
        if size is not None:
            window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        for take in window.unsaved_takes():
            take.saved = True
        window.close()
        window.shutdown()
        window.deleteLater()
    gc.collect()  # here, on the GUI thread: never let a later worker thread's collection destroy Qt objects


@pytest.fixture
def window(make_window):
    return make_window()


def tone(freq_hz: float, seconds: float, sr: int = 48000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency of the strongest bin in Hz, its power over the median power in dB)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    spectrum[:5] = 0
    k = int(np.argmax(spectrum))
    snr = 10 * np.log10(spectrum[k] / (np.median(spectrum) + 1e-20))
    return k * sr / len(x), float(snr)


@pytest.fixture
def tone_file(tmp_path):
    """A 2 s, 1 kHz tone at 48 kHz as WAV."""
    import soundfile as sf

    path = os.path.join(tmp_path, "tone-1k.wav")
    sf.write(path, tone(1000.0, 2.0), 48000, subtype="PCM_16")
    return path


class MonitorCapture:
    """Records what reaches ``test_sink`` (its monitor) with ``parec``, as mono float32 at 48 kHz."""

    RATE = 48000

    def __init__(self) -> None:
        import subprocess
        import threading

        self._chunks: list[bytes] = []
        self._proc = subprocess.Popen(
            ["parec", "-d", "test_sink.monitor", "--raw", "--format=float32le", f"--rate={self.RATE}",
             "--channels=1", "--latency-msec=20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            data = self._proc.stdout.read1(4096) if hasattr(self._proc.stdout, "read1") else self._proc.stdout.read(4096)
            if not data:
                return
            self._chunks.append(data)

    def audio(self) -> np.ndarray:
        raw = b"".join(self._chunks)
        return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4").astype(np.float32)

    def stop(self) -> np.ndarray:
        self._proc.terminate()
        self._proc.wait(5)
        self._thread.join(2)
        return self.audio()


@pytest.fixture
def monitor(pulse_server):
    captures = []

    def start() -> MonitorCapture:
        capture = MonitorCapture()
        captures.append(capture)
        return capture

    yield start
    for capture in captures:
        if capture._proc.poll() is None:
            capture.stop()


def espeak(path, text: str, pitch: int = 50) -> str:
    """Write espeak-ng speech (22.05 kHz WAV) to ``path``; returns it."""
    import subprocess

    subprocess.run(["espeak-ng", "-s", "170", "-p", str(pitch), "-w", str(path), text], check=True, timeout=60)
    return str(path)


def voiced_median_f0(audio: np.ndarray, rate: int) -> float:
    """Median F0 (Hz) of the loud voiced frames of ``audio`` [T] (WORLD DIO at 16 kHz)."""
    from studio.engine.audio.resample import resample
    from studio.engine.convert.world import analyze

    features = analyze(resample(np.asarray(audio, np.float32), rate, 16000), 16000)
    energy = np.log(features.sp.sum(axis=1) + 1e-12)
    loud = (features.f0 > 0) & (energy > energy.max() - 9)
    return float(np.median(features.f0[loud]))
