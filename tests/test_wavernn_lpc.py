"""The LPC configuration of WaveRNN (``lpc_order > 0``): configuration, causality, generation equal to
teacher forcing on the generated audio, fast stream == plain reconstruction, folding, cancel, checkpoint
round trip, training on real speech. Tiny models; seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import formant_signal
from support.crop_training import adam_steps_on_random_crops, eval_loss, evenly_spaced_crops
from support.quiet_logits import favour_small_classes
from support.tiny_training import espeak_word

from studio.engine.audio import lpc
from studio.engine.audio.features import FeatureProfile, MelFrontEnd
from studio.engine.checkpoints import load_model, save_checkpoint
from studio.engine.models.base import CancelToken, GenerateRequest, build_model
from studio.engine.models.wavernn import ConditioningSource, WaveRNN, WaveRNNConfig
from studio.engine.models.wavernn_native import native_library
from studio.engine.models.wavernn_step import LpcStepper

PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)
TINY = dict(rnn_dims=32, fc_dims=24, n_mels=8, upsample_scales=(4, 4), res_blocks=1, compute_dims=16,
            res_out_dims=16, pad=2, bits=8)


def lpc_model(seed: int = 0, order: int = 16, quiet: bool = True) -> WaveRNN:
    """A random tiny LPC model; ``quiet``: its softmax favours small excitations (as a trained model's
    does), so generated signals stay well inside [-1, 1] and nothing is clipped."""
    torch.manual_seed(seed)
    model = WaveRNN(WaveRNNConfig(lpc_order=order, **TINY), PROFILE)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    if quiet:
        favour_small_classes(model.fc3, model.start_class, 0.01)
    return model.eval()


def formant_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """The tiny profile's formant mel (``support.formant_signal``): [1, 8, frames]."""
    return formant_signal.formant_mel(PROFILE, frames, seed)


def test_config_checks_and_old_configs_load_unchanged():
    with pytest.raises(ValueError, match="lpc_order=16 needs mode='mulaw'"):
        WaveRNNConfig(mode="dual", bits=16, lpc_order=16)
    with pytest.raises(ValueError, match="n_mels=0"):
        WaveRNNConfig(n_mels=0, lpc_order=16)
    with pytest.raises(ValueError, match="got 33"):
        WaveRNNConfig(lpc_order=33)
    old = build_model("wavernn", {k: v for k, v in TINY.items()}, PROFILE)  # a card without lpc_order
    assert old.config.lpc_order == 0 and old.I.in_features == 1 + 8 + 4 and old.receptive_field == 1
    new = lpc_model()
    assert new.I.in_features == 3 + 8 + 4 and new.receptive_field == 16
    assert new.card().config["lpc_order"] == 16 and "LPC" in new.card().description


def test_logits_depend_only_on_earlier_samples():
    model = lpc_model(quiet=False)
    n = 160
    audio = torch.randn(1, n) * 0.1
    mel = formant_mel(n // 16)
    with torch.no_grad():
        base = model.teacher_forced_logits(audio, mel)
        changed = audio.clone()
        changed[0, 90] += 0.3
        other = model.teacher_forced_logits(changed, mel)
    assert torch.equal(base[0, :91], other[0, :91])  # sample 90 is first seen at step 91
    assert (base[0, 91:] - other[0, 91:]).abs().max() > 1e-3


def test_generation_equals_teacher_forcing_on_the_generated_audio():
    """What the step loop draws, teacher forcing on the audio it made must see: the same logits at every
    step and the drawn classes as its excitation targets -- so training and generation feed the network
    the same inputs (prediction, previous sample, previous excitation)."""
    model = lpc_model(seed=1)
    n, mel = 320, formant_mel(20, seed=1)
    with torch.inference_mode():
        cond = model.conditioning(mel, n)
        stepper = model.stepper()
        assert isinstance(stepper, LpcStepper)
        logits_seen = torch.zeros(n, model.config.classes)
        drawn = torch.zeros(n, dtype=torch.long)
        uniforms = torch.rand(n, generator=torch.Generator().manual_seed(3))

        def choose(logits, t, part):
            logits_seen[t] = logits[0]
            q = torch.searchsorted(torch.softmax(logits[0], -1).cumsum(-1), uniforms[t : t + 1]).clamp(max=255)
            drawn[t] = q[0]
            return q

        signal = torch.zeros(1, n)
        list(stepper.run(cond, choose, signal, model.start_class, yield_every=100))
        assert signal.abs().max() < 0.9 and signal.abs().max() > 1e-3  # nothing clipped, not silent
        audio = torch.from_numpy(lpc.deemphasise(signal.numpy().astype(np.float64))[0])
        logits, targets = model._lpc_teacher_forced(audio, mel)
    assert torch.equal(targets[0], drawn)
    assert (logits[0] - logits_seen).abs().max() < 2e-3
    assert logits_seen.std() > 0.05


@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("native", [True, False])
def test_stream_equals_the_plain_sample_by_sample_reconstruction(temperature, native):
    model = lpc_model(seed=2, quiet=False)  # every input moves the draws (a quiet prior would hide them)
    mel = formant_mel(25, seed=2)
    plain = model.generate_plain(mel, 390, torch.Generator().manual_seed(5), temperature)
    req = GenerateRequest(mel=mel[0].numpy(), num_samples=390, seed=5, temperature=temperature, block_size=64,
                          options={"native": native})
    if native and native_library() is None:
        pytest.skip("no C compiler here: the native loop is optional")
    blocks = list(model.stream(req))
    assert [len(b) for b in blocks[:-1]] == [64] * 6 and all(b.dtype == np.float32 for b in blocks)
    fast = np.concatenate(blocks)
    if native:  # C: the same function to float32 rounding (summation order, exp and log differ)
        np.testing.assert_allclose(fast, plain.numpy(), rtol=0, atol=2e-5)
    else:
        np.testing.assert_array_equal(fast, plain.numpy())
    assert np.abs(fast).max() > 1e-3
    if temperature > 0:
        assert len(np.unique(fast)) > 100


@pytest.mark.parametrize("streams", [3, 9])
def test_native_loop_equals_the_torch_steps_on_a_batch_of_streams(streams):
    """Folded generation's batches, through the C loop's 4-row and 8-row kernels and its one-row tail."""
    if native_library() is None:
        pytest.skip("no C compiler here: the native loop is optional")
    model = lpc_model(seed=6, quiet=False)
    mel = formant_mel(12, seed=6)
    with torch.inference_mode():
        cond = model.conditioning(mel, 192).expand(streams, -1, -1).contiguous()
        cond = cond + 0.05 * torch.randn(cond.shape, generator=torch.Generator().manual_seed(1))
        out = {}
        for native in (False, True):
            runs = model.generate_classes(cond, torch.Generator().manual_seed(2), 1.0, 50, native=native)
            *_, (done, signal) = runs
            assert done == 192 and signal.dtype == torch.float32
            out[native] = signal.clone()
    assert (out[True] - out[False]).abs().max() < 2e-5
    assert out[True].abs().max() > 0.01 and not torch.equal(out[True][0], out[True][1])


def test_conditioning_spans_carry_the_whole_input_coefficients():
    model = lpc_model()
    mel = formant_mel(150)
    total = 150 * 16 - 5
    with torch.inference_mode():
        whole = model.conditioning(mel, total)[0]
        source = ConditioningSource(model, mel, total)
        # spans within and across the source's blocks of LPC_BLOCK_FRAMES (64 frames = 1024 samples here)
        for start, stop in ((0, 40), (37, 200), (1000, 2100), (300, 1500), (2300, total)):
            span = source.span(start, stop)[0]
            assert (span - whole[start:stop]).abs().max() < 1e-5
        coef = lpc.lpc_from_mel(mel[0], PROFILE, 16).float()  # [frames, 16]
    assert torch.equal(whole[100, -16:], coef[100 // 16]) and torch.equal(whole[100, -16:], whole[111, -16:])


def test_folded_generation_streams_the_requested_length_and_repeats_with_the_seed():
    model = lpc_model(seed=3)
    mel = formant_mel(60, seed=3)[0].numpy()
    opts = {"folded": True, "fold_length": 160, "fold_overlap": 32}
    a = model.generate(GenerateRequest(mel=mel, seed=1, options=opts))
    b = model.generate(GenerateRequest(mel=mel, seed=1, options=opts))
    c = model.generate(GenerateRequest(mel=mel, seed=2, options=opts))
    assert a.shape == (960,) and np.all(np.isfinite(a)) and np.abs(a).max() < 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # one fold that covers everything is the unfolded stream
    one = model.generate(GenerateRequest(mel=mel, seed=1, options={"folded": True, "fold_length": 960}))
    np.testing.assert_array_equal(one, model.generate(GenerateRequest(mel=mel, seed=1)))


def test_cancel_stops_the_stream_after_the_current_block():
    model = lpc_model()
    mel = formant_mel(200)[0].numpy()
    token = CancelToken()
    made = []
    for block in model.stream(GenerateRequest(mel=mel, block_size=256, cancel=token)):
        made.append(block)
        token.cancel()
    assert sum(len(b) for b in made) == 256


def test_checkpoint_round_trip_keeps_the_configuration(tmp_path):
    model = lpc_model(seed=4)
    paths = save_checkpoint(model, tmp_path / "lpc")
    loaded = load_model(paths.weights, family="wavernn")
    assert loaded.config == model.config and loaded.config.lpc_order == 16
    mel = formant_mel(10, seed=4)[0].numpy()
    np.testing.assert_array_equal(model.generate(GenerateRequest(mel=mel, seed=7)),
                                  loaded.generate(GenerateRequest(mel=mel, seed=7)))


# -- training on real speech ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 0.6 s of real synthesized speech (espeak-ng), resampled to 16 kHz."""
    return espeak_word(tmp_path_factory.mktemp("speech"), PROFILE.sample_rate, peak=0.3)


@pytest.mark.slow
def test_a_few_dozen_training_steps_lower_the_excitation_loss(speech):
    """60 Adam steps on 16 x 160-sample crops of one spoken word: the loss (nats per excitation sample)
    falls well below its start and below the entropy of the excitation classes' histogram (the best a
    model blind to context could do). The prediction itself must already help: the excitation's class
    histogram is narrower than the signal's."""
    torch.set_num_threads(1)
    model = lpc_model(seed=5, quiet=False).train()
    front = MelFrontEnd(PROFILE)
    seg = 160
    fixed = evenly_spaced_crops(speech, seg)

    def entropy(classes: np.ndarray) -> float:
        p = np.bincount(classes.reshape(-1)) / classes.size
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    with torch.no_grad():
        excitation = model._lpc_teacher_forced(fixed, front(fixed))[1].numpy()
    signal = model.encode(lpc.preemphasise(fixed)).numpy()
    assert entropy(excitation) < entropy(signal) - 0.2
    before = eval_loss(model, fixed, front(fixed))
    adam_steps_on_random_crops(model, speech, front, length=seg)  # 60 steps of 16 crops
    after = eval_loss(model, fixed, front(fixed))
    assert after < before - 0.4, (before, after)
    assert after < entropy(excitation) - 0.1, (after, entropy(excitation))
