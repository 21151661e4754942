"""μ-law companding: the derived round-trip bound holds (and is tight), order and symmetry, every bit depth,
numpy and torch alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.audio.mulaw import mulaw_decode, mulaw_encode, roundtrip_error_bound

BITS = list(range(2, 17))


def grid() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-1, 1, 20001), rng.uniform(-1, 1, 20000), rng.uniform(-1e-3, 1e-3, 5000)])


@pytest.mark.parametrize("bits", BITS)
def test_round_trip_error_is_within_the_derived_bound_and_the_bound_is_tight(bits):
    x = grid()
    q = mulaw_encode(x, bits)
    assert q.dtype == np.int64 and q.min() >= 0 and q.max() <= 2**bits - 1
    y = mulaw_decode(q, bits)
    assert y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - x)
    bound = roundtrip_error_bound(x, bits)
    assert np.all(err <= bound + 1e-7)
    # Not a vacuous bound: somewhere the error reaches at least half of it.
    assert np.max(err / bound) > 0.5


def test_bound_values_for_8_bits():
    assert roundtrip_error_bound(0.0, 8) == pytest.approx(np.log(256) / 255**2 * 256 ** (1 / 255), rel=1e-12)
    assert 0.021 < roundtrip_error_bound(1.0, 8) < 0.023  # about 2.2 % of full scale


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_monotonic_and_covers_every_class(bits):
    x = np.linspace(-1, 1, 400001)
    q = mulaw_encode(x, bits)
    assert np.all(np.diff(q) >= 0)
    if bits <= 8:
        assert set(np.unique(q)) == set(range(2**bits))
    levels = mulaw_decode(np.arange(2**bits), bits)
    assert np.all(np.diff(levels) > 0)
    assert levels[0] == -1.0 and levels[-1] == 1.0


@pytest.mark.parametrize("bits", BITS)
def test_symmetric(bits):
    mu = 2**bits - 1
    classes = np.arange(2**bits)
    np.testing.assert_allclose(mulaw_decode(mu - classes, bits), -mulaw_decode(classes, bits), atol=1e-7)
    x = np.random.default_rng(bits).uniform(-1, 1, 5000)
    np.testing.assert_array_equal(mulaw_encode(-x, bits), mu - mulaw_encode(x, bits))


def test_out_of_range_input_is_clipped_and_bad_bits_refused():
    np.testing.assert_array_equal(mulaw_encode(np.array([-5.0, 5.0]), 8), [0, 255])
    for bits in (1, 17, 8.0, True):
        with pytest.raises(ValueError, match="bits"):
            mulaw_encode(np.zeros(3), bits)


@pytest.mark.parametrize("bits", [4, 8, 10, 16])
def test_torch_in_torch_out_matches_numpy(bits):
    x = grid()[:5000]
    qt = mulaw_encode(torch.from_numpy(x).float(), bits)
    assert isinstance(qt, torch.Tensor) and qt.dtype == torch.int64
    np.testing.assert_array_equal(qt.numpy(), mulaw_encode(x.astype(np.float32), bits))
    yt = mulaw_decode(qt, bits)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
    np.testing.assert_array_equal(yt.numpy(), mulaw_decode(qt.numpy(), bits))
    assert yt.shape == qt.shape == (5000,)


def test_shapes_are_kept():
    x = np.random.default_rng(1).uniform(-1, 1, (3, 7, 5)).astype(np.float32)
    assert mulaw_encode(x).shape == (3, 7, 5)
    assert mulaw_decode(mulaw_encode(torch.from_numpy(x))).shape == (3, 7, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor_stays_on_device():
    x = torch.linspace(-1, 1, 1000, device="cuda")
    q = mulaw_encode(x, 8)
    assert q.device.type == "cuda"
    assert mulaw_decode(q, 8).device.type == "cuda"
