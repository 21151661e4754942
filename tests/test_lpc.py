"""Linear prediction from the mel (studio.engine.audio.lpc) against independent computations: scipy's
Toeplitz solver for the normal equations, a known all-pole process, the numpy NNLS of Griffin-Lim, and a
direct sum for the prediction. Pure computation on synthetic and real-sized signals; a second or two."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter

from studio.engine.audio import lpc
from studio.engine.audio.features import compute_mel, get_profile
from studio.engine.audio.griffinlim import linear_from_mel_energies

PROFILE = get_profile("speech16k")
TRUE_AR = np.array([1.0, -1.6, 1.28, -0.6, 0.25])
"""A(z) of a stable order-4 all-pole filter (poles at radius ~0.8 and ~0.6)."""


def formant_filter() -> np.ndarray:
    """A(z) of three speech-like formants: 500, 1500, 2500 Hz at pole radii 0.97, 0.95, 0.9 (16 kHz)."""
    poles = []
    for hz, radius in ((500, 0.97), (1500, 0.95), (2500, 0.9)):
        w = 2 * np.pi * hz / 16000
        poles += [radius * np.exp(1j * w), radius * np.exp(-1j * w)]
    return np.real(np.poly(poles))


def ar_signal(n: int, seed: int = 0, a: np.ndarray = TRUE_AR, gain: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return lfilter([1.0], a, rng.standard_normal(n)) * gain


def sample_autocorrelation(x: np.ndarray, order: int) -> np.ndarray:
    return np.array([np.dot(x[: len(x) - k], x[k:]) for k in range(order + 1)]) / len(x)


def test_levinson_solves_the_normal_equations_like_scipy():
    x = ar_signal(20000, seed=1) + 0.001 * np.random.default_rng(2).standard_normal(20000)
    r = sample_autocorrelation(x, 16)
    a, err = lpc.levinson(torch.from_numpy(r))
    direct = solve_toeplitz(r[:16], -r[1:17])  # R a = -r  (a_1..a_p)
    np.testing.assert_allclose(a[1:].numpy(), direct, rtol=1e-9, atol=1e-11)
    assert a[0] == 1.0
    # the prediction error power is r0 + sum a_k r_k
    assert err.item() == pytest.approx(r[0] + np.dot(direct, r[1:17]), rel=1e-9)
    # batched over leading axes: each row on its own
    r2 = np.stack([r, sample_autocorrelation(ar_signal(8000, seed=3), 16)])
    a2, _ = lpc.levinson(torch.from_numpy(r2)[None])
    np.testing.assert_allclose(a2[0, 1, 1:].numpy(), solve_toeplitz(r2[1, :16], -r2[1, 1:]), rtol=1e-9, atol=1e-11)


def test_levinson_recovers_a_known_all_pole_process():
    r = sample_autocorrelation(ar_signal(200_000, seed=4), 4)
    a, _ = lpc.levinson(torch.from_numpy(r))
    np.testing.assert_allclose(a.numpy(), TRUE_AR, atol=0.02)


def test_a_not_positive_definite_autocorrelation_still_gives_a_stable_filter():
    a, _ = lpc.levinson(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64))  # |k| would be 1
    assert np.all(np.abs(np.roots(a.numpy())) < 1.0)


def test_mel_to_power_is_the_griffin_lim_nnls_squared():
    x = ar_signal(16000, seed=5).astype(np.float32)
    mel = compute_mel(x, PROFILE)
    ours = lpc.mel_to_power(torch.from_numpy(mel), PROFILE, iterations=40).numpy()  # [N, F]
    theirs = linear_from_mel_energies(np.exp(mel.astype(np.float64)), PROFILE).T ** 2  # 40 iterations there
    # the same algorithm; only the starting floor differs (per frame here, so any span of frames gets the
    # coefficients of the whole input; over the whole input there), which the updates all but forget
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-9 * theirs.max())


def test_lpc_from_the_mel_predicts_almost_as_well_as_lpc_from_the_signal():
    """On a three-formant all-pole process the mel-derived predictor (computed without seeing the samples)
    must get within 2.5 dB of the prediction gain of the optimal order-16 predictor solved from the
    signal itself (measured: 24.8 against 26.6 dB)."""
    x = ar_signal(32000, seed=6, a=formant_filter(), gain=0.002)
    mel = compute_mel(x.astype(np.float32), PROFILE)
    coef = lpc.lpc_from_mel(torch.from_numpy(mel), PROFILE, 16)  # [N, 16]
    assert coef.shape == (mel.shape[1], 16) and coef.dtype == torch.float64
    s = lpc.preemphasise(torch.from_numpy(x)[None])
    n = mel.shape[1] * PROFILE.hop_length
    p = lpc.predict(s[:, :n], coef.repeat_interleave(PROFILE.hop_length, dim=0)[None])
    ours = 10 * np.log10(float((s[:, :n] ** 2).sum() / ((s[:, :n] - p) ** 2).sum()))
    sv = s[0, :n].numpy()
    r = sample_autocorrelation(sv, 16)
    c = -solve_toeplitz(r[:16], -r[1:17])  # predictor coefficients from the signal
    direct = lfilter(np.concatenate([[0.0], c]), [1.0], sv)
    best = 10 * np.log10(np.sum(sv**2) / np.sum((sv - direct) ** 2))
    assert best > 20.0  # a process with real structure to predict
    assert ours > best - 2.5, (ours, best)
    # every frame's synthesis filter is stable, including the quiet edges
    for frame in coef.numpy()[:: max(1, len(coef) // 20)]:
        assert np.all(np.abs(np.roots(np.concatenate([[1.0], -frame]))) < 1.0)


def test_silence_gives_a_harmless_predictor():
    mel = np.full((PROFILE.n_mels, 5), np.log(PROFILE.clamp_min), dtype=np.float32)
    coef = lpc.lpc_from_mel(torch.from_numpy(mel), PROFILE, 16).numpy()
    assert np.all(np.isfinite(coef))
    for frame in coef:
        assert np.all(np.abs(np.roots(np.concatenate([[1.0], -frame]))) < 1.0)


def test_predict_is_the_direct_sum_over_past_samples():
    rng = np.random.default_rng(7)
    s = rng.standard_normal((2, 50))
    c = rng.standard_normal((2, 50, 3))
    p = lpc.predict(torch.from_numpy(s), torch.from_numpy(c)).numpy()
    for b in range(2):
        for t in range(50):
            want = sum(c[b, t, k - 1] * s[b, t - k] for k in range(1, 4) if t - k >= 0)
            assert p[b, t] == pytest.approx(want, abs=1e-12)


def test_deemphasis_inverts_preemphasis_block_by_block():
    x = np.random.default_rng(8).standard_normal((3, 1000)) * 0.1
    s = lpc.preemphasise(torch.from_numpy(x)).numpy()
    whole, _ = lpc.deemphasise(s)
    np.testing.assert_allclose(whole, x, atol=1e-6)
    state, parts = None, []
    for lo in range(0, 1000, 137):
        out, state = lpc.deemphasise(s[:, lo : lo + 137], state=state)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6)


def test_order_must_fit_the_spectrum():
    with pytest.raises(ValueError, match="order must be >= 1"):
        lpc.lpc_from_mel(torch.zeros(80, 2), PROFILE, 0)
    with pytest.raises(ValueError, match="n_fft too small"):
        lpc.autocorrelation_from_power(torch.ones(5), 8, 16000)


def test_synthesis_inverts_the_excitation_block_by_block_with_coefficients_changing_per_frame():
    """The excitation of a formant signal under per-frame coefficients from its mel, run back through
    ``Synthesis`` in uneven blocks, gives the audio back (the all-pole state crosses frame borders)."""
    x = ar_signal(16000, seed=3, a=formant_filter(), gain=0.002)
    x *= 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, x.shape[0]))  # a level that moves
    mel = torch.from_numpy(compute_mel(x.astype(np.float32), PROFILE)).unsqueeze(0).double()
    frames = lpc.lpc_from_mel(mel, PROFILE)  # [1, F, 16]
    assert frames.shape[1] * PROFILE.hop_length >= x.shape[0]
    per = lpc.per_sample(frames, PROFILE.hop_length, x.shape[0])
    assert torch.equal(per[0, 5 * PROFILE.hop_length + 7], frames[0, 5])
    e = lpc.excitation(torch.from_numpy(x).unsqueeze(0).double(), per)[0].numpy()
    assert np.sqrt(np.mean(e**2)) < 0.5 * np.sqrt(np.mean(lpc.preemphasise(torch.from_numpy(x)).numpy() ** 2))
    synthesis = lpc.Synthesis(frames[0].numpy(), PROFILE.hop_length)
    cuts = [0, 1, 150, 151, 777, 5000, 5003, 12345, x.shape[0]]
    out = np.concatenate([synthesis.process(e[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_allclose(out, x, atol=1e-5)
    whole = lpc.Synthesis(frames[0].numpy(), PROFILE.hop_length).process(e)
    np.testing.assert_allclose(out, whole, atol=1e-6)
    lazy = lpc.MelCoefficients(mel[0], PROFILE, chunk=7)  # computed 7 frames at a time as the blocks reach them
    synthesis = lpc.Synthesis(lazy, PROFILE.hop_length)
    assert not lazy._chunks
    np.testing.assert_allclose(np.concatenate([synthesis.process(e[a:b]) for a, b in itertools.pairwise(cuts)]), out, atol=1e-6)


def test_synthesis_refuses_empty_coefficients():
    with pytest.raises(ValueError, match="coefficients"):
        lpc.Synthesis(np.zeros((0, 16)), 200)
