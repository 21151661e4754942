"""Helpers for the real-audio tests: test signals, spectral checks, and a playback warm-up.

For its first ~2 s a fresh PulseAudio server holds back every stream (measured here: callbacks
stall 1.5–2 s). ``warm_up_output`` waits until ``support.pulse``'s start-up silence has drained (the
stall is over), then plays a short silence through PortAudio once per process, so timed checks in the
tests absorb neither the server's stall nor PortAudio's first-stream set-up.
"""

from __future__ import annotations

import threading

import numpy as np

_warm_lock = threading.Lock()
_warmed = False


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A sine, float32 ``[T]``."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, sample_rate: int) -> float:
    """The strongest frequency in Hz (Hann window, parabolic peak interpolation)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-20)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * sample_rate / len(x)


def tone_snr_db(x: np.ndarray, sample_rate: int, freq: float, band_hz: float = 20.0) -> float:
    """Energy within ``band_hz`` of ``freq`` over the energy everywhere else, in dB."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1).mean(axis=1)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    band = np.abs(freqs - freq) <= band_hz
    return 10 * np.log10(power[band].sum() / max(power[~band].sum(), 1e-30))


def warm_up_output() -> None:
    """Play 0.2 s of silence through the default output once per process (see the module doc)."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        from studio.engine.audio.player import Player
        from support import pulse

        pulse.wait_until_warm()
        player = Player()
        try:
            player.play_buffer(np.zeros(9600, np.float32), 48000)
            player.wait(timeout=10)
        finally:
            player.stop()
        _warmed = True
