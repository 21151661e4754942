"""The live distribution hook (``options['on_distribution']``) of WaveNet and WaveRNN.

Every test generates with a real tiny model and checks the rows against the model's own teacher-forced
logits of the generated samples: the row of sample ``t`` must be ``softmax(logits_t / temperature)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from studio.engine.audio.features import FeatureProfile
from studio.engine.models import distribution
from studio.engine.models.base import GenerateRequest
from studio.engine.models.distribution import DistributionTap, distribution_classes
from studio.engine.models.wavenet import WaveNet, WaveNetConfig
from studio.engine.models.wavenet_fold import crossfade_length
from studio.engine.models.wavenet_native import native_library
from studio.engine.models.wavernn import WaveRNN, WaveRNNConfig
from studio.engine.models.wavernn_native import native_library as wavernn_native_library

WN_PROFILE = FeatureProfile(
    name="wavenet-test", sample_rate=16000, n_fft=256, hop_length=64, win_length=256, n_mels=8, fmin=0.0, fmax=8000.0
)
WN_TINY = WaveNetConfig(
    kernel_size=2, layers=6, dilation_cycle=3, residual_channels=8, gate_channels=12, skip_channels=8,
    n_mels=8, cond_channels=6, upsample_scales=(4, 16), mel_context=1,
)
RNN_PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)
RNN_TINY = dict(rnn_dims=32, fc_dims=24, n_mels=8, upsample_scales=(4, 4), res_blocks=1, compute_dims=16,
                res_out_dims=16, pad=2)


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)
    yield


def tiny_wavenet(**changes) -> WaveNet:
    torch.manual_seed(1234)
    return WaveNet(dataclasses.replace(WN_TINY, **changes), WN_PROFILE).eval()


def tiny_wavernn(mode: str = "mulaw", bits: int = 9) -> WaveRNN:
    torch.manual_seed(0)
    model = WaveRNN(WaveRNNConfig(mode=mode, bits=bits, **RNN_TINY), RNN_PROFILE)
    for mod in model.modules():  # non-trivial batch-norm statistics: the conditioning path really runs
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


def random_mel(n_mels: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_mels, frames)).astype(np.float32)


class Recorder:
    """Runs ``stream`` and notes the hook calls and the blocks in the order they happen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []  # (kind, first sample, count)
        self.calls: list[tuple[int, np.ndarray]] = []
        self.made = 0

    def __call__(self, start: int, probs: np.ndarray) -> None:
        assert isinstance(start, int)
        self.calls.append((start, probs))
        self.events.append(("rows", start, probs.shape[0]))

    def run(self, model, request: GenerateRequest) -> np.ndarray:
        blocks = []
        for block in model.stream(request):
            self.events.append(("block", self.made, block.shape[0]))
            self.made += block.shape[0]
            blocks.append(block)
        return np.concatenate(blocks)

    def rows(self, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample of each row, rows [n, C]) over all calls, checking that calls are contiguous and strided."""
        samples, rows = [], []
        for start, probs in self.calls:
            assert probs.dtype == np.float32 and probs.ndim == 2 and probs.flags.c_contiguous
            assert start % stride == 0
            samples.extend(range(start, start + stride * probs.shape[0], stride))
            rows.append(probs)
        return np.asarray(samples), np.concatenate(rows)

    def assert_rows_precede_their_blocks(self, stride: int) -> None:
        """Each call comes right before the block that holds its samples (and every block holding a tapped
        sample is preceded by such a call)."""
        for i, (kind, first, count) in enumerate(self.events):
            if kind != "rows":
                continue
            kind2, block_start, block_len = self.events[i + 1]
            assert kind2 == "block"
            assert block_start <= first and first + stride * (count - 1) < block_start + block_len


def with_hook(request: GenerateRequest, recorder: Recorder, stride: int) -> GenerateRequest:
    options = {**request.options, "on_distribution": recorder, "distribution_stride": stride}
    return dataclasses.replace(request, options=options)


def wavenet_reference(
    model: WaveNet, audio: np.ndarray, mel: np.ndarray, temperature: float, exact: int | None = None
) -> np.ndarray:
    """softmax(logits / T) of every generated sample, teacher-forced through the full network [T, C].
    ``exact``: samples that are class values (see ``wavernn_reference``)."""
    with torch.inference_mode():
        x = model.encode(torch.from_numpy(audio)).unsqueeze(0)
        inputs = torch.cat([torch.full((1, 1), model.silence_class), x[:, :-1]], dim=1)
        cond = model.upsample(torch.from_numpy(mel).unsqueeze(0))[..., : x.shape[1]]
        logits = model(inputs, cond)[0].t()
        head = torch.from_numpy(audio[:exact])
        assert torch.equal(model.decode(model.encode(head)), head)  # the classes read back exactly
        return torch.softmax(logits / temperature, dim=-1).numpy()


def wavernn_reference(
    model: WaveRNN, audio: np.ndarray, mel: np.ndarray, temperature: float, exact: int | None = None
) -> np.ndarray:
    """Teacher-forced softmax(logits / T) of the mu-law (or, dual: coarse) head, [T, C]. ``exact``: samples
    that are class values (folded audio is cross-faded after segment 0's own part; rows before it are causal)."""
    with torch.inference_mode():
        a = torch.from_numpy(audio).unsqueeze(0)
        assert torch.equal(model.decode(model.encode(a[:, :exact])), a[:, :exact])
        logits = model.teacher_forced_logits(a, torch.from_numpy(mel).unsqueeze(0))[0]
        if model.config.mode == "dual":
            logits = logits[:, 0]
        return torch.softmax(logits / temperature, dim=-1).numpy()


def check_rows(recorder: Recorder, reference: np.ndarray, stride: int, upto: int, classes: int) -> None:
    samples, rows = recorder.rows(stride)
    np.testing.assert_array_equal(samples, np.arange(0, upto, stride))
    assert rows.shape == (len(samples), classes)
    assert np.all(rows >= 0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rows, reference[samples], atol=2e-5)
    recorder.assert_rows_precede_their_blocks(stride)


# -- WaveNet ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
def test_wavenet_rows_are_the_tempered_softmax_and_samples_do_not_change(native):
    if native and native_library() is None:
        pytest.skip("no C compiler: the native WaveNet step loop is unavailable")
    model = tiny_wavenet()
    mel = random_mel(8, 12)
    n, stride, temperature = 700, 7, 0.8
    base = GenerateRequest(mel=mel, num_samples=n, seed=5, temperature=temperature, block_size=128,
                           options={"native": native})
    plain = model.generate(base)
    recorder = Recorder()
    tapped = recorder.run(model, with_hook(base, recorder, stride))
    np.testing.assert_array_equal(tapped, plain)
    assert len(recorder.calls) == -(-n // 128)  # one call per block (every block holds a tapped sample)
    check_rows(recorder, wavenet_reference(model, tapped, mel, temperature), stride, n, 256)


def test_wavenet_plain_path_rows():
    model = tiny_wavenet()
    mel = random_mel(8, 4)
    n, stride = 200, 5
    base = GenerateRequest(mel=mel, num_samples=n, seed=2, temperature=1.3, block_size=64, options={"plain": True})
    plain = model.generate(base)
    recorder = Recorder()
    tapped = recorder.run(model, with_hook(base, recorder, stride))
    np.testing.assert_array_equal(tapped, plain)
    check_rows(recorder, wavenet_reference(model, tapped, mel, 1.3), stride, n, 256)


def test_wavenet_folded_rows_cover_the_first_segment_only():
    model = tiny_wavenet()
    mel = random_mel(8, 16)
    n, stride, length, overlap = 1024, 4, 256, 64
    options = {"folded": True, "fold_length": length, "fold_overlap": overlap}
    base = GenerateRequest(mel=mel, num_samples=n, seed=9, temperature=1.0, block_size=40, options=options)
    plain = model.generate(base)
    recorder = Recorder()
    tapped = recorder.run(model, with_hook(base, recorder, stride))
    np.testing.assert_array_equal(tapped, plain)
    final0 = length + overlap - crossfade_length(overlap)  # segment 0 alone decides [0, final0)
    check_rows(recorder, wavenet_reference(model, tapped, mel, 1.0, exact=final0), stride, final0, 256)


def test_wavenet_temperature_zero_rows_are_one_hot_at_the_sample():
    model = tiny_wavenet()
    mel = random_mel(8, 4)
    recorder = Recorder()
    audio = recorder.run(model, with_hook(GenerateRequest(mel=mel, num_samples=256, temperature=0.0), recorder, 16))
    samples, rows = recorder.rows(16)
    chosen = model.encode(torch.from_numpy(audio)).numpy()[samples]
    np.testing.assert_array_equal(rows.argmax(axis=1), chosen)
    np.testing.assert_array_equal(rows.max(axis=1), 1.0)
    np.testing.assert_array_equal(rows.sum(axis=1), 1.0)


# -- WaveRNN ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
@pytest.mark.parametrize("mode,bits", [("mulaw", 9), ("dual", 16)])
def test_wavernn_rows_are_the_tempered_softmax_and_samples_do_not_change(mode, bits, native):
    if native and wavernn_native_library() is None:
        pytest.skip("no C compiler: the native WaveRNN step loop is unavailable")
    model = tiny_wavernn(mode, bits)
    mel = random_mel(8, 40)
    n, stride, temperature = 640, 9, 0.7
    base = GenerateRequest(mel=mel, num_samples=n, seed=3, temperature=temperature, block_size=100,
                           options={"native": native})
    plain = model.generate(base)
    recorder = Recorder()
    tapped = recorder.run(model, with_hook(base, recorder, stride))
    np.testing.assert_array_equal(tapped, plain)
    classes = 256 if mode == "dual" else 1 << bits
    assert distribution_classes(model) == classes
    check_rows(recorder, wavernn_reference(model, tapped, mel, temperature), stride, n, classes)


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
def test_wavernn_folded_rows_cover_the_first_segment_only(native):
    if native and wavernn_native_library() is None:
        pytest.skip("no C compiler: the native WaveRNN step loop is unavailable")
    model = tiny_wavernn()
    mel = random_mel(8, 60)
    n, stride, length, overlap = 960, 8, 200, 40
    options = {"folded": True, "fold_length": length, "fold_overlap": overlap, "native": native}
    base = GenerateRequest(mel=mel, num_samples=n, seed=4, temperature=1.0, block_size=50, options=options)
    plain = model.generate(base)
    recorder = Recorder()
    tapped = recorder.run(model, with_hook(base, recorder, stride))
    np.testing.assert_array_equal(tapped, plain)
    own = length + overlap + overlap // 2  # segment 0 alone decides [0, own)
    check_rows(recorder, wavernn_reference(model, tapped, mel, 1.0, exact=own), stride, own, 512)


# -- cost when absent, option checks -------------------------------------------------------------------
@pytest.mark.parametrize("family", ["wavenet", "wavernn"])
def test_without_the_option_no_row_is_ever_computed(family, monkeypatch):
    model = tiny_wavenet() if family == "wavenet" else tiny_wavernn()
    mel = random_mel(8, 8 if family == "wavenet" else 20)
    request = GenerateRequest(mel=mel, num_samples=300, seed=1, block_size=64)
    model.generate(request)  # warm caches (WaveRNN keeps its stepper)
    attributes = set(vars(model))

    def forbidden(*args, **kwargs):
        raise AssertionError("a distribution row was computed")

    monkeypatch.setattr(distribution, "probabilities", forbidden)
    made = model.generate(request)
    assert made.shape == (300,)
    assert set(vars(model)) == attributes
    assert DistributionTap.from_request(request) is None
    # the same patch does bite once the option is given (so the check above is meaningful)
    with pytest.raises(AssertionError, match="distribution row"):
        model.generate(with_hook(request, Recorder(), 32))
    assert set(vars(model)) == attributes


def test_default_stride_and_bad_options_are_refused():
    model = tiny_wavernn()
    recorder = Recorder()
    request = GenerateRequest(mel=random_mel(8, 20), num_samples=320, block_size=320,
                              options={"on_distribution": recorder})
    model.generate(request)
    samples, _ = recorder.rows(distribution.DEFAULT_DISTRIBUTION_STRIDE)
    np.testing.assert_array_equal(samples, np.arange(0, 320, distribution.DEFAULT_DISTRIBUTION_STRIDE))
    with pytest.raises(ValueError, match="distribution_stride.*got 0"):
        model.generate(dataclasses.replace(request, options={"on_distribution": recorder, "distribution_stride": 0}))
    with pytest.raises(TypeError, match="must be callable"):
        model.generate(dataclasses.replace(request, options={"on_distribution": "rows please"}))


def test_only_autoregressive_families_report_a_distribution():
    from studio.engine.models.waveglow import WaveGlow

    assert WaveNet.supports_distribution and WaveRNN.supports_distribution
    assert not WaveGlow.supports_distribution
    assert distribution_classes(tiny_wavenet(mu_bits=6)) == 64


def test_bin_classes_sums_neighbours_and_keeps_the_mass():
    rng = np.random.default_rng(0)
    probs = rng.random((5, 512)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    binned = distribution.bin_classes(probs, 128)
    assert binned.shape == (5, 128) and binned.dtype == np.float32
    np.testing.assert_allclose(binned[:, 3], probs[:, 12:16].sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(binned.sum(axis=1), 1.0, atol=1e-5)
    uneven = distribution.bin_classes(probs[:, :300], 128)  # 300 classes: bins of 2 or 3
    assert uneven.shape == (5, 128)
    np.testing.assert_allclose(uneven.sum(axis=1), probs[:, :300].sum(axis=1), rtol=1e-5)
    small = distribution.bin_classes(probs[:, :64], 128)
    np.testing.assert_array_equal(small, probs[:, :64])
    with pytest.raises(ValueError, match="rows, classes"):
        distribution.bin_classes(probs[0])
