"""The LPC configuration of WaveRNN (``lpc_order > 0``): configuration, causality, generation equal to
teacher forcing on the generated audio, fast stream == plain reconstruction, folding, cancel, checkpoint
round trip, training on real speech; noise injection (training only) and pitch inputs (layout, generation
== teacher forcing, native == torch == plain, widening a trained model, phase alignment). Tiny models;
seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import formant_signal
from support.crop_training import adam_steps_on_random_crops, eval_loss, evenly_spaced_crops
from support.quiet_logits import favour_small_classes
from support.tiny_training import espeak_word

from studio.engine.audio import lpc, pitch
from studio.engine.audio.features import FeatureProfile, MelFrontEnd, get_profile
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


def generate_then_teacher_force(model: WaveRNN, mel: torch.Tensor, n: int):
    """``n`` samples through the stepper (seeded draws), then teacher forcing (eval mode) on the audio
    they make: (logits seen per step [n, K], drawn classes [n], pre-emphasised signal [1, n], teacher-forced
    logits [1, n, K], its targets [1, n])."""
    with torch.inference_mode():
        cond = model.conditioning(mel, n)
        logits_seen = torch.zeros(n, model.config.classes)
        drawn = torch.zeros(n, dtype=torch.long)
        uniforms = torch.rand(n, generator=torch.Generator().manual_seed(3))

        def choose(logits, t, part):
            logits_seen[t] = logits[0]
            q = torch.searchsorted(torch.softmax(logits[0], -1).cumsum(-1), uniforms[t : t + 1]).clamp(max=255)
            drawn[t] = q[0]
            return q

        signal = torch.zeros(1, n)
        list(model.stepper().run(cond, choose, signal, model.start_class, yield_every=100))
        audio = torch.from_numpy(lpc.deemphasise(signal.numpy().astype(np.float64))[0])
        logits, targets = model._lpc_teacher_forced(audio, mel)
    return logits_seen, drawn, signal, logits, targets


def test_generation_equals_teacher_forcing_on_the_generated_audio():
    """What the step loop draws, teacher forcing on the audio it made must see: the same logits at every
    step and the drawn classes as its excitation targets -- so training and generation feed the network
    the same inputs (prediction, previous sample, previous excitation)."""
    model = lpc_model(seed=1)
    n, mel = 320, formant_mel(20, seed=1)
    assert isinstance(model.stepper(), LpcStepper)
    logits_seen, drawn, signal, logits, targets = generate_then_teacher_force(model, mel, n)
    assert signal.abs().max() < 0.9 and signal.abs().max() > 1e-3  # nothing clipped, not silent
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


# -- noise injection (training only) ---------------------------------------------------------------------------
def test_noise_injection_is_checked_and_leaves_held_out_losses_alone():
    with pytest.raises(ValueError, match="needs lpc_order > 0"):
        WaveRNNConfig(noise_injection=2.0, **TINY)
    with pytest.raises(ValueError, match="0..128"):
        WaveRNNConfig(noise_injection=200.0, lpc_order=16, **TINY)
    clean, noisy = lpc_model(seed=6, quiet=False), lpc_model(seed=6, quiet=False)
    noisy.config = WaveRNNConfig(lpc_order=16, noise_injection=4.0, **TINY)
    audio = torch.from_numpy(formant_signal.formant_audio(640, seed=6)).unsqueeze(0).float()
    mel = MelFrontEnd(PROFILE)(audio)
    with torch.no_grad():
        assert torch.equal(clean.training_loss(audio, mel), noisy.eval().training_loss(audio, mel))
        torch.manual_seed(0)
        trained_on = noisy.train().training_loss(audio, mel)
        assert abs(float(trained_on) - float(clean.training_loss(audio, mel))) > 1e-3


@pytest.mark.parametrize("scale", [1.0, 6.0])
def test_the_noisy_past_is_a_generated_past_and_the_target_steers_back_to_the_clean_signal(scale):
    """The past the network sees under noise injection relates to its inputs as a generated past does
    (``s~ = p~ + decoded previous class``, to the quantiser), deviates from the clean signal more the
    larger the scale, and the target class rebuilds the clean sample from the noisy prediction."""
    model = lpc_model(seed=7, quiet=False)
    model.config = WaveRNNConfig(lpc_order=16, noise_injection=scale, **TINY)
    audio = torch.from_numpy(formant_signal.formant_audio(1600, seed=7)).reshape(2, 800).float()
    mel = MelFrontEnd(PROFILE)(audio)
    coef = model.sample_lpc(mel, 0, audio.shape[1])
    s = lpc.preemphasise(audio).clamp(-1, 1)
    p = lpc.predict(s, coef)
    q = model.encode(s - p)
    torch.manual_seed(1)
    s_noisy, p_noisy, past, target = model._noisy_past(s, p, q, coef)
    assert torch.equal(p_noisy, lpc.predict(s_noisy, coef))
    top = model.config.classes - 1
    step = torch.maximum(model.decode((past + 1).clamp(max=top)) - model.decode(past),
                         model.decode(past) - model.decode((past - 1).clamp(min=0)))  # the quantiser's step there
    assert ((s_noisy - (p_noisy + model.decode(past))).abs() <= step + 1e-6).all()
    rebuilt = p_noisy + model.decode(target)
    assert (rebuilt - s).abs().mean() < 0.5 * (s_noisy - s).abs().mean()
    deviation = float((s_noisy - s).abs().mean() / s.abs().mean())
    assert (0.01 < deviation < 0.2) if scale == 1.0 else (0.1 < deviation < 1.5), deviation


# -- pitch inputs ------------------------------------------------------------------------------------------------
SPEECH = get_profile("speech16k")
SMALL = dict(rnn_dims=24, fc_dims=16, n_mels=80, upsample_scales=(8, 5, 5), res_blocks=1, compute_dims=8,
             res_out_dims=8, pad=1, bits=8, lpc_order=16)


def voiced_speech(seconds: float = 0.4, f0: float = 125.0) -> np.ndarray:
    """A vowel-like signal: a glottal pulse train (one sharp pulse per period, F0 gliding by 10 %)
    through two formant resonators, at 16 kHz."""
    n = int(seconds * SPEECH.sample_rate)
    contour = np.linspace(f0, 1.1 * f0, n)
    phase = np.cumsum(contour) / SPEECH.sample_rate
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -1.6, 0.9], pulses)
    x = lfilter([1.0], [1.0, -0.4, 0.7], x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def pitch_model(seed: int = 0) -> WaveRNN:
    torch.manual_seed(seed)
    model = WaveRNN(WaveRNNConfig(pitch_inputs=True, **SMALL), SPEECH)
    favour_small_classes(model.fc3, model.start_class, 0.01)
    return model.eval()


def test_pitch_inputs_are_checked_and_sit_after_the_mel():
    with pytest.raises(ValueError, match="pitch_inputs needs lpc_order > 0"):
        WaveRNNConfig(pitch_inputs=True, **{**SMALL, "lpc_order": 0})
    model = pitch_model()
    assert model.I.in_features == 3 + 80 + pitch.SOURCE_FEATURES + 2 and model.mel_dims == 80 + pitch.SOURCE_FEATURES
    card = model.card()
    assert card.config["pitch_inputs"] is True and "pitch" in card.description
    mel = MelFrontEnd(SPEECH)(torch.from_numpy(voiced_speech())[None])
    n = mel.shape[-1] * SPEECH.hop_length
    cond = model.conditioning(mel, n)
    assert cond.shape == (1, n, model.mel_dims + 8 + 16)
    source = pitch.SourceTrack(mel, SPEECH).features(0, n)
    assert torch.equal(cond[..., 80 : model.mel_dims], source) and source[..., 2].max() == 1.0


def test_a_pitch_model_generates_what_teacher_forcing_on_its_audio_sees():
    """Generation (phase 0 at sample 0) and teacher forcing in eval mode feed the same source."""
    model = pitch_model(seed=1)
    mel = MelFrontEnd(SPEECH)(torch.from_numpy(voiced_speech())[None])
    n = mel.shape[-1] * SPEECH.hop_length
    logits_seen, drawn, _, logits, targets = generate_then_teacher_force(model, mel, n)
    assert torch.equal(targets[0], drawn)
    assert (logits[0] - logits_seen).abs().max() < 2e-3


@pytest.mark.parametrize("folded", [False, True])
def test_a_pitch_model_streams_as_its_plain_reconstruction(folded):
    model = pitch_model(seed=2)
    mel = MelFrontEnd(SPEECH)(torch.from_numpy(voiced_speech(0.3))[None])
    options = {"folded": True, "fold_length": 1600, "fold_overlap": 200} if folded else {}
    native = model.generate(GenerateRequest(mel=mel[0].numpy(), seed=5, options={**options, "native": True}))
    torch_steps = model.generate(GenerateRequest(mel=mel[0].numpy(), seed=5, options={**options, "native": False}))
    np.testing.assert_allclose(native, torch_steps, atol=1e-5)
    if not folded:
        plain = model.generate_plain(mel, native.size, torch.Generator().manual_seed(5))
        np.testing.assert_array_equal(torch_steps, plain.numpy())
    assert np.abs(native).max() > 1e-3


def test_widening_a_trained_model_with_pitch_inputs_keeps_what_it_makes():
    """The warm start of the bundled model: the copy's source inputs start with zero weights, so it
    generates exactly what the model did; other fields and taking the inputs away are refused."""
    torch.manual_seed(4)
    plain = WaveRNN(WaveRNNConfig(**SMALL), SPEECH)
    favour_small_classes(plain.fc3, plain.start_class, 0.01)
    plain.eval()
    widened = plain.reconfigured({"pitch_inputs": True, "noise_injection": 1.0})
    assert widened.config.pitch_inputs and widened.config.noise_injection == 1.0 and widened is not plain
    assert widened.I.in_features == plain.I.in_features + pitch.SOURCE_FEATURES and not widened.training
    mel = MelFrontEnd(SPEECH)(torch.from_numpy(voiced_speech(0.2))[None])[0].numpy()
    np.testing.assert_allclose(widened.generate(GenerateRequest(mel=mel, seed=1)),
                               plain.generate(GenerateRequest(mel=mel, seed=1)), atol=1e-5)
    with pytest.raises(ValueError, match="cannot change rnn_dims"):
        plain.reconfigured({"rnn_dims": 32})
    with pytest.raises(ValueError, match="cannot take"):
        widened.reconfigured({"pitch_inputs": False})
    assert plain.reconfigured({}) is plain


def test_training_puts_the_excitation_pulses_on_phase_zero():
    """In training (and held-out) losses the source's phase is shifted so the strongest voiced excitation sample
    falls on phase 0; the tracked pitch then keeps every pulse of the segment near phase 0 (the
    network learns to fire at phase 0, where generation puts the pulses of the tracked pitch)."""
    model = pitch_model(seed=3)
    audio = torch.from_numpy(voiced_speech(0.6)).reshape(3, -1)[:, :3200]  # three segments, 0.2 s each
    mel = MelFrontEnd(SPEECH)(audio)
    coef = model.sample_lpc(mel, 0, audio.shape[1])
    s = lpc.preemphasise(audio).clamp(-1, 1)
    e = s - lpc.predict(s, coef)
    start, source = model._aligned_source(mel, e)
    phases = pitch.SourceTrack(mel, SPEECH, start).phases(audio.shape[1])
    assert (source - pitch.SourceTrack(mel, SPEECH, start).features(0, audio.shape[1])).abs().max() < 1e-5
    voiced = pitch.SourceTrack(mel, SPEECH).features(0, audio.shape[1])[..., 2] > 0.5
    for row in range(3):
        strongest = e[row].abs() * voiced[row]
        peaks = torch.nonzero(strongest > 0.5 * strongest.max()).squeeze(-1)  # the pulses, far from the edges
        peaks = peaks[(peaks > 400) & (peaks < 2800)]
        assert len(peaks) >= 5
        assert phases[row, peaks].abs().max() < 0.6, phases[row, peaks]
