"""WaveGlow over the LPC excitation (``WaveGlowConfig.lpc_order``): the flows model the excitation of
the mel's linear prediction and generation synthesises it. Checked against the plain computation:
the streamed audio is the whole excitation (``infer``) through the all-pole filter, the excitation of
that audio is what the flows produced, chunking changes nothing, and training lowers the likelihood
of real speech's excitation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from support import formant_signal, tiny_waveglow
from support.crop_training import adam_steps_on_batch
from support.tiny_training import espeak_word

from studio.engine.audio import lpc
from studio.engine.audio.features import MelFrontEnd
from studio.engine.models.base import GenerateRequest, build_model
from studio.engine.models.waveglow import WaveGlow, WaveGlowConfig

PROFILE = tiny_waveglow.PROFILE
CONFIG = dataclasses.replace(tiny_waveglow.CONFIG, lpc_order=12)


def formant_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """The tiny profile's formant mel (``support.formant_signal``): [1, 8, frames]."""
    return formant_signal.formant_mel(PROFILE, frames, seed)


def test_config_checks_and_old_configs_load_unchanged():
    with pytest.raises(ValueError, match="lpc_order"):
        WaveGlowConfig(lpc_order=33)
    old = build_model("waveglow", {k: v for k, v in dataclasses.asdict(tiny_waveglow.CONFIG).items() if k != "lpc_order"},
                      PROFILE)
    assert old.config.lpc_order == 0
    assert tiny_waveglow.live_waveglow(config=CONFIG).card().config["lpc_order"] == 12


def test_streamed_audio_is_the_synthesised_excitation_of_the_flows():
    model = tiny_waveglow.live_waveglow(seed=2, config=CONFIG)
    mel = formant_mel(41, seed=2)
    request = GenerateRequest(mel=mel[0].numpy(), seed=3, sigma=0.05, options={"chunk_frames": 7})
    blocks = list(model.stream(request))
    assert len(blocks) == 6 and all(len(b) == 7 * PROFILE.hop_length for b in blocks[:-1])
    audio = np.concatenate(blocks)
    whole = model.generate(GenerateRequest(mel=mel[0].numpy(), seed=3, sigma=0.05, options={"chunk_frames": 1000}))
    np.testing.assert_allclose(audio, whole, atol=1e-6)  # chunking changes nothing
    z = torch.randn((1, CONFIG.n_group, 41 * PROFILE.hop_length // CONFIG.n_group),
                    generator=torch.Generator().manual_seed(3)) * 0.05
    with torch.no_grad():
        excitation = model.infer(mel, 0.05, z=z)[0].double().numpy()
    synthesis = lpc.Synthesis(lpc.lpc_from_mel(mel[0].double(), PROFILE, 12).numpy(), PROFILE.hop_length)
    np.testing.assert_allclose(audio, np.clip(synthesis.process(excitation), -1, 1), atol=1e-5)
    assert 1e-3 < np.abs(audio).max() < 0.99
    coefficients = lpc.sample_coefficients(mel, PROFILE, 12, audio.shape[0])
    recovered = lpc.excitation(torch.from_numpy(audio)[None].double(), coefficients.double())[0].numpy()
    np.testing.assert_allclose(recovered, excitation, atol=1e-4)
    assert np.abs(audio - excitation).max() > 1e-2  # the filter did something


@pytest.mark.slow
def test_a_few_training_steps_lower_the_nll_of_the_excitation(tmp_path):
    speech = torch.from_numpy(espeak_word(tmp_path, PROFILE.sample_rate, peak=0.3))
    segment = 16 * PROFILE.hop_length
    starts = torch.linspace(0, speech.shape[0] - segment, 4).long()
    audio = torch.stack([speech[s : s + segment] for s in starts])
    mel = MelFrontEnd(PROFILE)(audio)
    torch.manual_seed(0)
    model = WaveGlow(CONFIG, PROFILE).train()
    losses = adam_steps_on_batch(model, audio, mel, steps=30, lr=5e-3)
    assert np.isfinite(losses).all()
    assert float(np.mean(losses[-3:])) < losses[0] - 1.0, losses
    # the loss is the excitation's: the same model scores the raw audio differently
    with torch.no_grad():
        raw = model.negative_log_likelihood(*model(audio, mel)).item()
    assert abs(raw - model.training_loss(audio, mel).item()) > 0.05


def test_the_bias_denoiser_is_refused_for_the_excitation():
    """The denoiser subtracts the flows' bias from what they make: over the excitation it made every
    strength worse (docs/models.md), so an LPC WaveGlow refuses it with the reason; 0 generates."""
    model = tiny_waveglow.live_waveglow(config=CONFIG)
    assert not model.supports_denoise and tiny_waveglow.live_waveglow().supports_denoise
    mel = formant_mel(9)[0].numpy()
    with pytest.raises(ValueError, match="linear prediction.*denoise to 0"):
        model.generate(GenerateRequest(mel=mel, denoise=0.1))
    assert model.generate(GenerateRequest(mel=mel, denoise=0.0)).shape[0] == 9 * PROFILE.hop_length
