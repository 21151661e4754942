"""A model's ``sampling_temperature``: the temperature a request's 1.0 stands for with that model.

The bundled WaveNet and WaveRNN carry 0.9 (measured on the held-out speech, docs/models.md); every
generation path goes through ``WaveformModel.stream``, which multiplies the request's temperature by it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from support import formant_signal
from support.quiet_logits import favour_small_classes

from studio.engine.audio.features import FeatureProfile
from studio.engine.checkpoints import load_model, save_checkpoint
from studio.engine.models.base import GenerateRequest, build_model
from studio.engine.models.wavenet import WaveNet, WaveNetConfig
from studio.engine.models.wavernn import WaveRNN, WaveRNNConfig

PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)
WAVENET = WaveNetConfig(kernel_size=2, layers=6, dilation_cycle=3, residual_channels=8, gate_channels=12,
                        skip_channels=8, n_mels=8, cond_channels=6, upsample_scales=(4, 4), lpc_order=16)
WAVERNN = WaveRNNConfig(rnn_dims=32, fc_dims=24, n_mels=8, upsample_scales=(4, 4), res_blocks=1, compute_dims=16,
                        res_out_dims=16, pad=2, bits=8, lpc_order=16)


def tiny(family: str, sampling_temperature: float = 1.0) -> WaveNet | WaveRNN:
    """The same random tiny LPC model (seeded) with the given calibration; its softmax favours small
    excitations, as a trained model's does."""
    torch.manual_seed(0)
    if family == "wavenet":
        model = WaveNet(dataclasses.replace(WAVENET, sampling_temperature=sampling_temperature), PROFILE)
        favour_small_classes(model.post2, model.silence_class, 0.003)
    else:
        model = WaveRNN(dataclasses.replace(WAVERNN, sampling_temperature=sampling_temperature), PROFILE)
        favour_small_classes(model.fc3, model.start_class, 0.01)
    return model.eval()


def generate(model, temperature: float, **options) -> np.ndarray:
    mel = formant_signal.formant_mel(PROFILE, 40, 3)[0].numpy()  # 640 samples: two folds below
    return model.generate(GenerateRequest(mel=mel, seed=5, temperature=temperature, options=options))


@pytest.mark.parametrize("family", ["wavenet", "wavernn"])
@pytest.mark.parametrize("options", [{}, {"native": False}, {"folded": True, "fold_length": 320, "fold_overlap": 280}])
def test_a_calibrated_model_at_1_samples_as_the_trained_one_at_its_temperature(family, options):
    torch.set_num_threads(1)
    calibrated, trained = tiny(family, 0.9), tiny(family, 1.0)
    at_one = generate(calibrated, 1.0, **options)
    np.testing.assert_array_equal(at_one, generate(trained, 0.9, **options))
    assert not np.array_equal(at_one, generate(trained, 1.0, **options))  # the calibration changes the draws
    # a request's own temperature still applies on top (0.5 x 0.9), and 0 is still the argmax
    np.testing.assert_array_equal(generate(calibrated, 0.5, **options), generate(trained, 0.45, **options))
    np.testing.assert_array_equal(generate(calibrated, 0.0, **options), generate(trained, 0.0, **options))


@pytest.mark.parametrize("family", ["wavenet", "wavernn"])
def test_the_calibration_is_checked_and_travels_with_the_checkpoint(family, tmp_path):
    config = WAVENET if family == "wavenet" else WAVERNN
    for bad in (0.0, -1.0, float("nan"), float("inf"), "0.9"):
        with pytest.raises(ValueError, match="sampling_temperature must be a positive number"):
            dataclasses.replace(config, sampling_temperature=bad)
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k != "sampling_temperature"}
    assert build_model(family, fields, PROFILE).config.sampling_temperature == 1.0  # a card from before it
    model = tiny(family, 0.9)
    loaded = load_model(save_checkpoint(model, tmp_path / "m").weights, family=family)
    assert loaded.config.sampling_temperature == 0.9 and loaded.card().config["sampling_temperature"] == 0.9
    np.testing.assert_array_equal(generate(loaded, 1.0), generate(model, 1.0))
