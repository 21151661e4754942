"""WaveNet over the LPC excitation (``WaveNetConfig.lpc_order``): generation draws the excitation and
the mel's all-pole filter makes it audio; training models the same excitation. Checked against the
plain computation: the excitation recovered from the generated audio is what was drawn, every path
(native, torch steps, plain, folded) gives the same audio for the same draws, and training on real
speech lowers the excitation loss."""

from __future__ import annotations

import dataclasses

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
from studio.engine.models.base import GenerateRequest, build_model
from studio.engine.models.wavenet import WaveNet, WaveNetConfig

PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)
TINY = WaveNetConfig(kernel_size=2, layers=6, dilation_cycle=3, residual_channels=8, gate_channels=12,
                     skip_channels=8, n_mels=8, cond_channels=6, upsample_scales=(4, 4), lpc_order=16)


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)
    yield


def lpc_wavenet(seed: int = 0, **changes) -> WaveNet:
    """A random tiny LPC WaveNet whose softmax favours small excitations (as a trained model's does), so
    the synthesised audio stays inside [-1, 1] and nothing is clipped."""
    torch.manual_seed(seed)
    model = WaveNet(dataclasses.replace(TINY, **changes), PROFILE)
    favour_small_classes(model.post2, model.silence_class, 0.003)
    return model.eval()


def formant_mel(frames: int, seed: int = 0) -> np.ndarray:
    """The tiny profile's formant mel (``support.formant_signal``): [8, frames]."""
    return formant_signal.formant_mel(PROFILE, frames, seed)[0].numpy()


def test_config_checks_and_old_configs_load_unchanged():
    with pytest.raises(ValueError, match="needs a mel"):
        WaveNetConfig(n_mels=0, lpc_order=16)
    with pytest.raises(ValueError, match="got 33"):
        WaveNetConfig(lpc_order=33)
    old = build_model("wavenet", {k: v for k, v in dataclasses.asdict(TINY).items() if k != "lpc_order"}, PROFILE)
    assert old.config.lpc_order == 0 and old.describe()["lpc_order"] == 0
    assert lpc_wavenet().card().config["lpc_order"] == 16


def drawn_excitation(model: WaveNet, request: GenerateRequest) -> np.ndarray:
    """The decoded classes the model draws for ``request`` (before the synthesis filter)."""
    mel = torch.from_numpy(request.mel)[None]
    generator = torch.Generator().manual_seed(int(request.seed))
    with torch.inference_mode():
        blocks = model._generate_classes(request, mel, model.resolve_length(request), generator)
        return torch.cat([b.reshape(-1) for b in blocks]).numpy()


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_the_excitation_of_the_generated_audio_is_what_was_drawn(temperature):
    """Generation and training agree: the audio's excitation under the mel's coefficients (what
    training computes from real audio) equals the decoded classes drawn, and the greedy draw at
    temperature 0 is the full network's argmax over those classes."""
    model = lpc_wavenet(seed=1)
    request = GenerateRequest(mel=formant_mel(30, seed=1), seed=4, temperature=temperature, block_size=100)
    audio = model.generate(request)
    assert 1e-3 < np.abs(audio).max() < 0.95 and audio.shape == (30 * 16,)
    drawn = drawn_excitation(model, request)
    coefficients = model.sample_lpc(torch.from_numpy(request.mel)[None], audio.shape[0])
    recovered = lpc.excitation(torch.from_numpy(audio)[None].double(), coefficients.double())[0].numpy()
    np.testing.assert_allclose(recovered, drawn, atol=2e-4)
    if temperature > 0:
        assert np.abs(audio - drawn).max() > 1e-2  # the filter did something
    classes = model.encode(torch.from_numpy(recovered).float())
    assert torch.equal(classes, model.encode(torch.from_numpy(drawn)))
    if temperature == 0:
        inputs = torch.cat([torch.tensor([model.silence_class]), classes[:-1]])[None]
        cond = model.upsample(torch.from_numpy(request.mel)[None])[..., : audio.shape[0]]
        with torch.no_grad():
            assert torch.equal(model(inputs, cond).argmax(dim=1)[0], classes)


@pytest.mark.parametrize("options", [{"native": True}, {"native": False}, {"folded": True, "fold_length": 160,
                                                                           "fold_overlap": 32}])
def test_every_path_gives_the_plain_paths_audio_for_the_same_draws(options):
    model = lpc_wavenet(seed=2)
    request = GenerateRequest(mel=formant_mel(40, seed=2), seed=5, temperature=1.0, block_size=96, options=options)
    fast = model.generate(request)
    if options.get("folded"):  # folding cross-fades segments: the same as synthesising its joined excitation
        joined = drawn_excitation(model, request)
        synthesis = lpc.Synthesis(model.frame_lpc(torch.from_numpy(request.mel)[None])[0].numpy(), PROFILE.hop_length)
        np.testing.assert_allclose(fast, synthesis.process(joined), atol=1e-6)
        return
    plain = model.generate_plain(request)
    np.testing.assert_allclose(fast, plain, atol=1e-6)
    assert len(np.unique(fast)) > 100


def test_checkpoint_round_trip_keeps_the_configuration(tmp_path):
    model = lpc_wavenet(seed=3)
    paths = save_checkpoint(model, tmp_path / "lpc-wavenet")
    loaded = load_model(paths.weights, family="wavenet")
    assert loaded.config == model.config and loaded.config.lpc_order == 16
    request = GenerateRequest(mel=formant_mel(10, seed=3), seed=7)
    np.testing.assert_array_equal(model.generate(request), loaded.generate(request))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 0.6 s of real synthesized speech (espeak-ng), resampled to 16 kHz."""
    return espeak_word(tmp_path_factory.mktemp("speech"), PROFILE.sample_rate, peak=0.3)


@pytest.mark.slow
def test_a_few_dozen_training_steps_lower_the_excitation_loss(speech):
    """60 Adam steps on 16 x 160-sample crops of one spoken word: the loss (nats per excitation sample)
    falls well below its start, and the prediction already helps: the excitation's class histogram is
    narrower than the signal's."""
    model = lpc_wavenet(seed=5).train()
    front = MelFrontEnd(PROFILE)
    fixed = evenly_spaced_crops(speech, 160)

    def entropy(classes: torch.Tensor) -> float:
        p = np.bincount(classes.numpy().reshape(-1)) / classes.numel()
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    coefficients = model.sample_lpc(front(fixed), fixed.shape[1])
    excitation = model.encode(lpc.excitation(fixed, coefficients))
    assert entropy(excitation) < entropy(model.encode(lpc.preemphasise(fixed))) - 0.2
    before = eval_loss(model, fixed, front(fixed))
    adam_steps_on_random_crops(model, speech, front, length=160)
    after = eval_loss(model, fixed, front(fixed))
    assert after < before - 0.4, (before, after)
