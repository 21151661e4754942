"""Fast paths added for speed compute the same function as the plain modules they replace.

WaveGlow: ``FastWN`` (weight snapshots, 1×1 convolutions through oneDNN, per-layer conditioning) against
``WN.forward``; ``infer(fast=True)`` and ``stream`` against ``infer`` on the weight-normed modules.
``fast_linear.Affine`` (oneDNN-packed products) against ``addmm``; batched (oneDNN) WaveRNN and WaveNet
steps against the same streams stepped one at a time (``addmm``) and with oneDNN switched off; the
default fold lengths of both autoregressive families.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from support import tiny_waveglow
from support.cancel_timing import cancel_mid_run

from studio.engine.audio.features import FeatureProfile
from studio.engine.models import fast_linear
from studio.engine.models import wavenet_fold as wn_fold
from studio.engine.models import wavenet_native as wn_native
from studio.engine.models import wavernn_fold as rnn_fold
from studio.engine.models.base import GenerateRequest
from studio.engine.models.fast_linear import Affine
from studio.engine.models.waveglow import WaveGlow
from studio.engine.models.waveglow_fast import FastWN, pointwise
from studio.engine.models.waveglow_flow import WN
from studio.engine.models.wavenet import WaveNet, WaveNetConfig
from studio.engine.models.wavenet_fast import IncrementalWaveNet
from studio.engine.models.wavernn import WaveRNN, WaveRNNConfig, default_fold_length

PROFILE = tiny_waveglow.PROFILE
GLOW = dataclasses.replace(tiny_waveglow.CONFIG, wn_layers=3)


def glow(seed: int) -> WaveGlow:
    return tiny_waveglow.live_waveglow(seed, GLOW, PROFILE, end_std=0.2)


def mel(frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 8, frames, generator=torch.Generator().manual_seed(seed)) - 4.0


@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_equals_a_one_tap_convolution(threads):
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(2, 24, 300, generator=g), torch.randn(40, 24, 1, generator=g), torch.randn(40, generator=g)
        torch.testing.assert_close(pointwise(x, w, b), torch.nn.functional.conv1d(x, w, b), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(own)


@pytest.mark.parametrize("layers", [1, 4])
def test_fast_wn_equals_the_module_with_and_without_weight_norm(layers):
    torch.manual_seed(layers)
    wn = WN(n_in=3, n_cond=20, n_layers=layers, n_channels=12, kernel_size=3).eval()
    with torch.no_grad():
        wn.end.weight.normal_(0.0, 0.3)
        wn.end.bias.normal_(0.0, 0.3)
    x0, cond = torch.randn(2, 3, 77), torch.randn(2, 20, 77)
    with torch.inference_mode():
        want = wn(x0, cond)
        got = FastWN(wn)(x0, cond)
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    from studio.engine.models.waveglow_flow import fold_weight_norm

    fold_weight_norm(wn)
    with torch.inference_mode():
        torch.testing.assert_close(FastWN(wn)(x0, cond), want, rtol=1e-5, atol=1e-5)


def test_fast_infer_and_stream_equal_the_plain_weight_normed_infer():
    model = glow(seed=3)
    frames = 23
    m = mel(frames)
    z = torch.randn(1, GLOW.n_group, frames * PROFILE.hop_length // GLOW.n_group,
                    generator=torch.Generator().manual_seed(5)) * 0.6  # fmt: skip
    plain = model.infer(m, z=z)
    fast = model.infer(m, z=z, fast=True)
    assert plain.abs().max() > 0.05
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    # the stream (fast, chunked) gives what the plain whole pass gives from the same latent
    generator = torch.Generator().manual_seed(9)
    z_stream = torch.randn((1, GLOW.n_group, frames * PROFILE.hop_length // GLOW.n_group), generator=generator) * 0.6
    want = model.infer(m, z=z_stream)[0].clamp(-1, 1).numpy()
    got = np.concatenate(list(model.stream(GenerateRequest(mel=m[0].numpy(), seed=9, sigma=0.6,
                                                           options={"chunk_frames": 5}))))  # fmt: skip
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_fast_couplings_follow_weight_changes():
    model = glow(seed=4)
    m = mel(6)
    z = torch.randn(1, GLOW.n_group, 6 * PROFILE.hop_length // GLOW.n_group) * 0.6
    first = model.fast_couplings()
    assert model.fast_couplings() is first  # cached while nothing changes
    before = model.infer(m, z=z, fast=True)
    with torch.no_grad():
        model.WN[0].end.bias.add_(0.5)
    assert model.fast_couplings() is not first
    after = model.infer(m, z=z, fast=True)
    torch.testing.assert_close(after, model.infer(m, z=z), rtol=1e-4, atol=1e-5)
    assert (after - before).abs().max() > 1e-3
    model.remove_weight_norm()
    torch.testing.assert_close(model.infer(m, z=z, fast=True), after, rtol=1e-4, atol=1e-5)


# -- oneDNN-packed products ---------------------------------------------------------------------------
needs_onednn = pytest.mark.skipif(not fast_linear.onednn_enabled(), reason="this torch build has no oneDNN")


@pytest.mark.parametrize("rows", [1, 3, 16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_affine_equals_addmm(rows, with_bias):
    g = torch.Generator().manual_seed(rows)
    w, b = torch.randn(40, 72, generator=g), torch.randn(72, generator=g)
    x, add = torch.randn(rows, 40, generator=g), torch.randn(rows, 72, generator=g)
    aff = Affine(w, b if with_bias else None)
    want = x @ w + (b if with_bias else 0.0)
    with torch.inference_mode():
        torch.testing.assert_close(aff(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(aff(x, add), want + add, rtol=1e-5, atol=1e-5)
        # a non-contiguous input (a column slice) is accepted too
        wide = torch.randn(rows, 50, generator=g)
        torch.testing.assert_close(aff(wide[:, 5:45]), wide[:, 5:45] @ w + (b if with_bias else 0.0),
                                   rtol=1e-5, atol=1e-5)


@needs_onednn
def test_affine_packs_for_onednn_unless_switched_off(monkeypatch):
    w = torch.randn(8, 6)
    assert Affine(w).uses_onednn
    assert not Affine(w.double()).uses_onednn  # only float32 is packed
    monkeypatch.setenv(fast_linear.ENV_DISABLE, "1")
    assert not fast_linear.onednn_enabled() and not Affine(w).uses_onednn


RNN_PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)


def rnn(mode: str) -> WaveRNN:
    torch.manual_seed(7)
    cfg = WaveRNNConfig(mode=mode, bits=9 if mode == "mulaw" else 16, rnn_dims=32, fc_dims=24, n_mels=8,
                        upsample_scales=(4, 4), res_blocks=1, compute_dims=16, res_out_dims=16, pad=1)
    return WaveRNN(cfg, RNN_PROFILE).eval()


def forced_logits(model: WaveRNN, cond: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """Step B streams with the given classes [B, T]; logits [T, parts, B, K] of every step."""
    b, n, _ = cond.shape
    out = []

    def choose(logits, t, part):
        out.append(logits.clone())
        q = forced[:, t]
        return q if model.config.mode == "mulaw" else (q // 256 if part == 0 else q % 256)

    classes = torch.zeros(b, n, dtype=torch.long)
    with torch.inference_mode():
        list(model.stepper().run(cond, choose, classes, model.start_class, yield_every=n))
    return torch.stack(out).view(n, model.draws_per_step, b, -1)


@pytest.mark.parametrize("mode", ["mulaw", "dual"])
def test_batched_wavernn_steps_equal_streams_stepped_alone(mode, monkeypatch):
    model = rnn(mode)
    n, b = 40, 3
    with torch.inference_mode():
        cond = model.conditioning(torch.randn(b, 8, 3), n, batch=b)
    k = model.config.classes ** model.draws_per_step
    forced = torch.randint(0, k, (b, n), generator=torch.Generator().manual_seed(1))
    batched = forced_logits(model, cond, forced)  # oneDNN products where available
    assert batched.abs().max() > 0.05
    for i in range(b):  # one stream: addmm
        alone = forced_logits(model, cond[i : i + 1], forced[i : i + 1])
        torch.testing.assert_close(batched[:, :, i : i + 1], alone, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(fast_linear.ENV_DISABLE, "1")
    model.__dict__.pop("_stepper_cache", None)
    torch.testing.assert_close(forced_logits(model, cond, forced), batched, rtol=1e-5, atol=1e-5)


def test_batched_wavenet_steps_equal_the_full_network():
    torch.manual_seed(3)
    cfg = WaveNetConfig(kernel_size=3, layers=4, dilation_cycle=2, residual_channels=8, gate_channels=12,
                        skip_channels=8, n_mels=0)
    model = WaveNet(cfg, FeatureProfile(name="wn", sample_rate=16000, n_fft=256, hop_length=64,
                                        win_length=256, n_mels=8, fmin=0.0, fmax=8000.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for batch in (1, 4):
        x = torch.randint(0, 256, (batch, 50), generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            full = model(x, None, None)
        assert IncrementalWaveNet(model, batch).onednn == (batch > 1 and fast_linear.onednn_enabled())
        torch.testing.assert_close(model.incremental_logits(x), full, atol=1e-5, rtol=0)


# -- default fold lengths ------------------------------------------------------------------------------
def test_wavernn_default_folds_aim_for_a_batch_within_bounds():
    hop, overlap = 275, 550
    two_s, minute = 44100, 22050 * 60
    length = default_fold_length(two_s, overlap, hop)
    assert length == 8 * hop and rnn_fold.fold_count(two_s, length, overlap) == 16
    assert default_fold_length(minute, overlap, hop) == 40 * hop  # long audio keeps fatchord's segments
    assert default_fold_length(100, overlap, hop) == 8 * hop
    mid = default_fold_length(two_s * 4, overlap, hop)
    assert 8 * hop < mid < 40 * hop and rnn_fold.fold_count(two_s * 4, mid, overlap) == 16
    assert default_fold_length(two_s * 4, overlap, hop, batch=4) == 40 * hop


def test_wavenet_default_folds_aim_for_a_batch_within_bounds():
    overlap = 761
    length = wn_fold.default_fold_length(44100, overlap)
    assert length == 1355 and wn_fold.fold_count(44100, length, overlap) == 32  # ceil(43339 / 32)
    assert wn_fold.default_fold_length(10**7, overlap) == wn_fold.DEFAULT_FOLD_LENGTH
    assert wn_fold.default_fold_length(1000, overlap) == overlap  # never shorter than the overlap


def test_folded_wavernn_with_default_folds_streams_the_requested_length():
    model = rnn("mulaw")
    frames = 40
    request = GenerateRequest(mel=np.random.default_rng(0).standard_normal((8, frames)).astype(np.float32),
                              seed=2, block_size=100, options={"folded": True, "fold_batch": 4})
    audio = np.concatenate(list(model.stream(request)))
    assert audio.shape == (frames * RNN_PROFILE.hop_length,) and audio.dtype == np.float32
    assert np.all(np.abs(audio) <= 1.0) and np.abs(audio).max() > 0
    with pytest.raises(ValueError, match="fold_batch"):
        list(model.stream(GenerateRequest(mel=request.mel, options={"folded": True, "fold_batch": 0})))


@pytest.mark.parametrize("pad", [0, 2])
def test_wavernn_conditioning_by_spans_equals_the_whole_input(pad):
    from studio.engine.models.wavernn import ConditioningSource

    torch.manual_seed(pad)
    cfg = WaveRNNConfig(rnn_dims=16, fc_dims=16, n_mels=8, upsample_scales=(2, 3, 4), res_blocks=1,
                        compute_dims=8, res_out_dims=8, pad=pad)
    profile = FeatureProfile(name="t", sample_rate=16000, n_fft=96, hop_length=24, win_length=96, n_mels=8,
                             fmin=0.0, fmax=8000.0)
    model = WaveRNN(cfg, profile).eval()
    mel = torch.randn(1, 8, 30)
    total = 30 * 24 - 5
    with torch.inference_mode():
        whole = model.conditioning(mel, total)
        source = ConditioningSource(model, mel, total)
        for start, stop in [(0, 7), (0, total), (100, 161), (23, 24), (total - 30, total + 40)]:
            want = whole[:, start : min(stop, total)]
            got = source.span(start, stop)
            assert got.shape == (1, stop - start, whole.shape[-1])
            torch.testing.assert_close(got[:, : want.shape[1]], want, rtol=1e-5, atol=1e-5)
            assert not got[:, want.shape[1] :].any()  # past the end: zeros, as folding pads
        spans = source.cached([0, 300], 400)
        for t0 in range(0, 400, 50):
            got = spans(t0, 50)
            torch.testing.assert_close(got[0], whole[0, t0 : t0 + 50], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got[1, : max(0, total - 300 - t0)], whole[0, 300 + t0 : 350 + t0],
                                       rtol=1e-5, atol=1e-5)
    assert whole.abs().max() > 0.05


# -- native WaveNet step loop -----------------------------------------------------------------------------
def native_wavenet(**changes) -> WaveNet:
    torch.manual_seed(5)
    base = dict(kernel_size=3, layers=6, dilation_cycle=3, residual_channels=16, gate_channels=24, skip_channels=72,
                n_mels=8, upsample_scales=(8, 8), n_speakers=2, speaker_dim=3)
    model = WaveNet(WaveNetConfig(**{**base, **changes}), PROFILE).eval()
    with torch.no_grad():  # random biases, so the folded biases and the constant-1 column are exercised
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def wavenet_native_or_skip():
    """The native WaveNet library, or skip the test where it cannot be built (no compiler)."""
    lib = wn_native.native_library()
    if lib is None:
        pytest.skip("native loop unavailable (no compiler)")
    return lib


def test_native_library_builds_where_a_compiler_exists():
    import shutil

    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler on this machine: the native loop is optional there")
    assert wn_native.native_library() is not None


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_native_wavenet_logits_equal_the_full_network(kernel_size):
    lib = wavenet_native_or_skip()
    model = native_wavenet(kernel_size=kernel_size)
    length = 150
    x = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(2))
    speaker = torch.tensor([1])
    with torch.no_grad():
        cond = model.upsample(mel(3))[..., :length]
        full = model(x, cond, speaker)[0].t()  # [T, C]
    native = wn_native.NativeWaveNet(model, lib)
    with torch.inference_mode():
        biases = model.layer_biases(cond, speaker, 1, length, native.projection) * native.gate_scale
        # in two calls: the rings carry the past across calls
        got = torch.cat([native.logits(x[0, :61], biases[:61]), native.logits(x[0, 61:], biases[61:])])
    assert full.abs().max() > 0.1
    torch.testing.assert_close(got, full, atol=1e-5, rtol=0)


def test_native_generation_equals_the_torch_steps_and_the_plain_path():
    model = native_wavenet()
    request = GenerateRequest(mel=mel(20).numpy()[0], seed=4, temperature=0.9, block_size=301,
                              options={"speaker": 1})  # 1280 samples: crosses noise blocks and chunks
    native = model.generate(request)
    torch_steps = model.generate(GenerateRequest(**{**request.__dict__, "options": {"speaker": 1, "native": False}}))
    np.testing.assert_array_equal(native, torch_steps)
    short = GenerateRequest(mel=mel(3).numpy()[0], seed=4, temperature=0.9, options={"speaker": 1})
    np.testing.assert_array_equal(model.generate(short), model.generate_plain(short))
    greedy = GenerateRequest(mel=mel(6).numpy()[0], temperature=0.0, block_size=50)
    np.testing.assert_array_equal(
        model.generate(greedy), model.generate(GenerateRequest(**{**greedy.__dict__, "options": {"native": False}}))
    )


def test_native_loop_falls_back_when_the_build_fails_and_reuses_its_cache(tmp_path, monkeypatch, caplog):
    model = native_wavenet(layers=3)
    request = GenerateRequest(mel=mel(4).numpy()[0], seed=1, options={"speaker": 0})
    expected = model.generate(GenerateRequest(**{**request.__dict__, "options": {"speaker": 0, "native": False}}))
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path))
    monkeypatch.setattr(wn_native, "_state", {})
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with caplog.at_level("WARNING"):
        assert wn_native.native_library() is None
        np.testing.assert_array_equal(model.generate(request), expected)  # the torch steps, same samples
    assert "native WaveNet step loop unavailable" in caplog.text
    monkeypatch.delenv("CC")
    monkeypatch.setattr(wn_native, "_state", {})
    if wn_native.find_compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert wn_native.native_library() is not None
    built = list((tmp_path / "native").glob("wavenet_native-*.so"))
    assert len(built) == 1
    monkeypatch.setenv("CC", "false")  # cached: no compiler needed any more
    monkeypatch.setattr(wn_native, "_state", {})
    assert wn_native.native_library() is not None
    np.testing.assert_array_equal(model.generate(request), expected)
    monkeypatch.setenv(wn_native.ENV_DISABLE, "1")
    monkeypatch.setattr(wn_native, "_state", {})
    assert wn_native.native_library() is None


# -- the native folded WaveNet loop ----------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_native_folded_logits_equal_the_full_network(kernel_size):
    lib = wavenet_native_or_skip()
    model = native_wavenet(kernel_size=kernel_size)
    batch, length = 11, 150  # 11 folds: a full 8-row block plus a remainder; 72 skip channels: every column tail
    x = torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(2))
    speaker = torch.tensor([i % 2 for i in range(batch)])
    with torch.no_grad():
        cond = torch.cat([model.upsample(mel(3, seed=i))[..., :length] for i in range(batch)])  # [B, Cc, T]
        full = model(x, cond, speaker)  # [B, C, T]
    rows = cond.permute(2, 0, 1).contiguous()  # [T, B, Cc]
    inputs = x.t().contiguous()
    for threads in (1, 2, 3):
        stepper = wn_native.NativeFoldedWaveNet(model, lib, batch, speaker, threads=threads)
        with torch.inference_mode():  # in two calls: the rings carry the past across calls
            got = torch.cat([stepper.logits(inputs[:61], rows[:61]), stepper.logits(inputs[61:], rows[61:])])
        assert full.abs().max() > 0.1
        torch.testing.assert_close(got.permute(1, 2, 0), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("conditioned", [True, False])
def test_native_folded_generation_equals_the_torch_folded_steps(conditioned, monkeypatch):
    wavenet_native_or_skip()
    calls = {True: 0}
    run = wn_native.NativeFoldedWaveNet.run

    def counted(self, *args, **kwargs):
        calls[True] += 1
        return run(self, *args, **kwargs)

    monkeypatch.setattr(wn_native.NativeFoldedWaveNet, "run", counted)
    model = native_wavenet() if conditioned else native_wavenet(n_mels=0)
    taps = {True: [], False: []}
    # 40 frames x 64 = 2560 samples in 5 folds of 600 steps: every fold crosses a noise block (512)
    options = {"folded": True, "fold_length": 500, "fold_overlap": 100, "speaker": 1, "distribution_stride": 7}
    for temperature in (0.9, 0.0):
        made = {}
        for native in (True, False):
            request = GenerateRequest(
                mel=mel(40).numpy()[0] if conditioned else None, num_samples=None if conditioned else 2560, seed=4,
                temperature=temperature, block_size=128,
                options={**options, "native": native, "threads": 2 if native else 1,
                         "on_distribution": lambda start, probs, native=native: taps[native].append((start, probs))},
            )
            before = calls[True]
            blocks = list(model.stream(request))
            assert (calls[True] > before) == native  # the C loop runs exactly when asked for
            assert len(blocks) > 4  # fold 0 streams while the batch runs
            made[native] = np.concatenate(blocks)
        assert made[True].shape == (2560,) and np.abs(made[True]).max() > 0
        np.testing.assert_array_equal(made[True], made[False])
    # fold 0's distributions, cut into callbacks where each path yields its blocks
    for native in (True, False):
        assert taps[native][0][0] == 0 and all(len(probs) for _, probs in taps[native])
    got, want = (np.concatenate([probs for _, probs in taps[native]]) for native in (True, False))
    assert got.shape == want.shape and got.shape[0] == 2 * len(range(0, 500 + 50, 7))  # both temperatures
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="threads"):
        model.generate(GenerateRequest(mel=mel(40).numpy()[0] if conditioned else None, num_samples=2560,
                                       options={"folded": True, "threads": 0}))
    # one fold is one stream: the plain computation (the whole network per sample), same seed, same samples
    short = GenerateRequest(mel=mel(3).numpy()[0] if conditioned else None, num_samples=None if conditioned else 192,
                            seed=7, temperature=0.9, options={"speaker": 1})
    one_fold = {"folded": True, "fold_length": 100, "fold_overlap": 100, "speaker": 1}
    before = calls[True]
    folded = model.generate(GenerateRequest(**{**short.__dict__, "options": one_fold}))
    assert calls[True] > before and folded.shape == (192,)
    np.testing.assert_array_equal(folded, model.generate_plain(short))


def test_native_folded_aims_for_folds_per_worker_thread(monkeypatch):
    wavenet_native_or_skip()
    assert 1 <= wn_native.default_fold_threads() <= max(1, torch.get_num_threads())
    made = []
    init = wn_native.NativeFoldedWaveNet.__init__

    def recorded(self, model, lib, batch, speaker=None, threads=None, should_stop=None):
        init(self, model, lib, batch, speaker, threads, should_stop)
        made.append((batch, self.threads))

    monkeypatch.setattr(wn_native.NativeFoldedWaveNet, "__init__", recorded)
    model = native_wavenet(layers=3)
    frames = 400  # 25600 samples at hop 64: long enough for every fold count below
    total, overlap = frames * 64, model.receptive_field + wn_fold.FOLD_CROSSFADE
    monkeypatch.setattr(wn_native, "default_fold_threads", lambda: 1)
    for options in ({}, {"threads": 2}, {"threads": 3, "fold_batch": 5}):
        request = GenerateRequest(mel=mel(frames).numpy()[0], seed=1, options={"folded": True, **options})
        assert model.generate(request).shape == (total,)
        threads = options.get("threads", 1)
        aim = options.get("fold_batch", wn_fold.NATIVE_FOLDS_PER_THREAD * threads)
        count = wn_fold.fold_count(total, wn_fold.default_fold_length(total, overlap, aim), overlap)
        assert made[-1] == (count, threads) and count == aim


def test_a_cached_native_library_that_does_not_load_is_rebuilt_once(tmp_path, monkeypatch, caplog):
    from studio.engine.models import native_build

    if native_build.find_compiler() is None:
        pytest.skip("no C compiler on this machine")
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path / "first"))
    monkeypatch.setattr(wn_native, "_state", {})
    target = native_build.cached_library_path(wn_native.SOURCE)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a library: the disk was full")
    with caplog.at_level("WARNING"):
        assert wn_native.native_library() is not None
    assert "does not load" in caplog.text and "rebuilding it" in caplog.text
    assert target.read_bytes()[:4] == b"\x7fELF"
    # a compiler whose output never loads: rebuilt once, then a clear warning and the torch steps
    fake = tmp_path / "broken-cc"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\necho junk > "$2"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path / "second"))
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setattr(wn_native, "_state", {})
    broken = native_build.cached_library_path(wn_native.SOURCE)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"junk")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert wn_native.native_library() is None
    assert caplog.text.count("rebuilding it") == 1
    assert f"{broken} was just built with {fake} but does not load" in caplog.text
    assert "STUDIO_NO_NATIVE=1" in caplog.text
    monkeypatch.setattr(wn_native, "_state", {})


# -- the native WaveRNN step loop ---------------------------------------------------------------------------
def rnn_native_or_skip():
    from studio.engine.models import wavernn_native as rnn_native

    lib = rnn_native.native_library()
    if lib is None:
        pytest.skip("native loop unavailable (no compiler)")
    return rnn_native


def perturbed_rnn(mode: str) -> WaveRNN:
    """``rnn(mode)`` with every weight nudged, so the biases and all gates matter."""
    model = rnn(mode)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("mode", ["mulaw", "dual"])
@pytest.mark.parametrize("batch", [1, 6, 13])  # 6: four sharing weight loads + two alone; 13: 8 + 4 + 1
def test_native_wavernn_logits_equal_the_torch_steps(mode, batch):
    rnn_native = rnn_native_or_skip()
    model = perturbed_rnn(mode)
    n = 50
    with torch.inference_mode():
        cond = model.conditioning(torch.randn(batch, 8, 4), n, batch=batch)
    k = model.config.classes ** model.draws_per_step
    forced = torch.randint(0, k, (batch, n), generator=torch.Generator().manual_seed(batch))
    expected = forced_logits(model, cond, forced)  # [T, parts, B, K]
    run = rnn_native.native_run(model.stepper(), batch, model.start_class)
    got = run.logits(cond, forced)
    assert expected.abs().max() > 0.5
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["mulaw", "dual"])
def test_native_wavernn_generation_equals_the_torch_steps_and_the_plain_path(mode):
    """Same uniforms, same classes. The logits differ by float rounding (~5e-7), so a draw whose uniform
    falls within rounding of a CDF step can go either way (about 3.5e-5 of draws with 512 classes, measured
    with torch alone): the seed is fixed, and the logits test above is the tolerance proof."""
    rnn_native_or_skip()
    model = perturbed_rnn(mode)
    mel_np = np.random.default_rng(3).standard_normal((8, 40)).astype(np.float32)
    folded = {"folded": True, "fold_length": 96, "fold_overlap": 32}  # 5 folds: one block of four + one
    for opts in ({}, folded):
        for temperature in (1.0, 0.0):
            request = GenerateRequest(mel=mel_np, seed=12, temperature=temperature, block_size=97, options=opts)
            native = model.generate(request)
            torch_steps = model.generate(
                GenerateRequest(**{**request.__dict__, "options": {**opts, "native": False}})
            )
            assert np.abs(native).max() > 0
            np.testing.assert_array_equal(native, torch_steps)
    mel_t = torch.from_numpy(mel_np[:, :12]).unsqueeze(0)
    short = GenerateRequest(mel=mel_np[:, :12], seed=5, temperature=0.9)
    plain = model.generate_plain(mel_t, 12 * 16, torch.Generator().manual_seed(5), 0.9).numpy()
    np.testing.assert_array_equal(model.generate(short), plain)


@pytest.mark.parametrize("mode", ["mulaw", "dual"])
def test_native_wavernn_feeds_the_distribution_tap_like_the_torch_steps(mode):
    rnn_native_or_skip()
    model = perturbed_rnn(mode)
    mel_np = np.random.default_rng(4).standard_normal((8, 12)).astype(np.float32)
    rows = {}
    for native in (True, False):
        got: list = []
        opts = {"native": native, "on_distribution": lambda start, probs, got=got: got.append((start, probs)),
                "distribution_stride": 7}
        rows[native] = (model.generate(GenerateRequest(mel=mel_np, seed=2, block_size=50, options=opts)), got)
    np.testing.assert_array_equal(rows[True][0], rows[False][0])
    assert [s for s, _ in rows[True][1]] == [s for s, _ in rows[False][1]] and rows[True][1]
    for (_, a), (_, b) in zip(rows[True][1], rows[False][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_native_wavernn_falls_back_to_the_torch_steps_and_says_why(tmp_path, monkeypatch, caplog):
    from studio.engine.models import wavernn_native as rnn_native

    model = perturbed_rnn("mulaw")
    request = GenerateRequest(mel=np.random.default_rng(5).standard_normal((8, 6)).astype(np.float32), seed=1)
    expected = model.generate(GenerateRequest(**{**request.__dict__, "options": {"native": False}}))
    monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path))

    def fresh_state(**env):
        monkeypatch.setattr(rnn_native, "_state", {})
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        caplog.clear()

    with caplog.at_level("INFO", logger="studio.engine.models.native_build"):
        fresh_state(**{rnn_native.ENV_DISABLE: "1"})
        np.testing.assert_array_equal(model.generate(request), expected)
        assert "native WaveRNN step loop switched off (STUDIO_NO_NATIVE=1)" in caplog.text
        fresh_state(**{rnn_native.ENV_DISABLE: None, "CC": "false"})  # a "compiler" that always fails
        np.testing.assert_array_equal(model.generate(request), expected)
        assert "native WaveRNN step loop unavailable (false exited with" in caplog.text
        fresh_state(CC=None, PATH=str(tmp_path / "empty"))  # no compiler anywhere
        np.testing.assert_array_equal(model.generate(request), expected)
        assert "no C compiler found" in caplog.text
        assert not list((tmp_path / "native").glob("wavernn_native-*.so"))
        monkeypatch.undo()  # the real PATH and cache again, then a real build into a fresh cache
        monkeypatch.setenv("WAVEFORM_STUDIO_CACHE", str(tmp_path))
        fresh_state()
        if rnn_native.find_compiler() is None:
            pytest.skip("no C compiler on this machine")
        assert rnn_native.native_library() is not None
        assert len(list((tmp_path / "native").glob("wavernn_native-*.so"))) == 1
        fresh_state(CC="false")  # built once: the cache needs no compiler any more
        assert rnn_native.native_library() is not None
        np.testing.assert_array_equal(model.generate(request), expected)


@pytest.mark.parametrize("folded", [False, True])
def test_native_wavernn_cancel_lands_within_200_ms(folded):
    from studio.engine.models.base import CancelToken

    rnn_native_or_skip()
    torch.manual_seed(1)
    cfg = WaveRNNConfig(bits=9, rnn_dims=128, fc_dims=128, n_mels=8, upsample_scales=(4, 4), res_blocks=1,
                        compute_dims=16, res_out_dims=16, pad=1)
    model = WaveRNN(cfg, RNN_PROFILE).eval()
    frames = 20000  # 320000 samples: seconds of native stepping even on a fast idle machine
    token = CancelToken()
    opts = {"folded": True, "fold_length": 64000, "fold_overlap": 64} if folded else {}
    request = GenerateRequest(mel=np.random.default_rng(2).standard_normal((8, frames)).astype(np.float32),
                              block_size=1_000_000, cancel=token, options=opts)
    audio, latency = cancel_mid_run(lambda: model.generate(request), token, after_s=0.4)
    assert latency < 0.2, f"generate returned {latency * 1000:.0f} ms after cancel"
    assert 0 < len(audio) < frames * 16
