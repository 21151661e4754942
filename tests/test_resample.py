"""soxr resampling: whole signals and block-by-block streams agree, keep frequencies and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.audio.resample import StreamResampler, resample


def tone(freq: float, n: int, sr: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_resample_keeps_frequency_level_and_length():
    x = tone(1000, 22050, 22050)
    y = resample(x, 22050, 48000)
    assert y.dtype == np.float32 and y.shape == (48000,)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spec) * 48000 / len(y) == pytest.approx(1000, abs=1.5)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.005)
    stereo = np.stack([x, -x], axis=1)
    assert resample(stereo, 22050, 16000).shape == (16000, 2)
    np.testing.assert_array_equal(resample(x, 22050, 22050), x)


@pytest.mark.parametrize("channels", [1, 2])
def test_stream_equals_whole_signal(channels):
    x = tone(440, 30000, 44100)
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    stream = StreamResampler(44100, 48000, channels)
    sizes = np.random.default_rng(0).integers(1, 3000, 100)
    edges = np.minimum(np.cumsum(np.concatenate([[0], sizes])), len(x))
    pieces = [stream.process(x[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    pieces.append(stream.process(x[:0], last=True))
    y = np.concatenate(pieces)
    whole = resample(x, 44100, 48000)
    assert abs(len(y) - len(whole)) <= 1
    n = min(len(y), len(whole))
    np.testing.assert_allclose(y[:n], whole[:n], atol=1e-4)
    with pytest.raises(RuntimeError, match="reset"):
        stream.process(x[:10])
    stream.reset()
    assert stream.process(x[:10]).ndim == x.ndim


def test_stream_checks_shapes_and_rates():
    with pytest.raises(ValueError, match="channels"):
        StreamResampler(16000, 48000, 2).process(np.zeros(100, np.float32))
    with pytest.raises(ValueError):
        StreamResampler(0, 48000)
    passthrough = StreamResampler(48000, 48000, 1)
    np.testing.assert_array_equal(passthrough.process(np.ones(5, np.float32)), np.ones(5))
