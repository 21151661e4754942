"""The four bundled models (issue 5), as recipes.

Sizes are chosen for samples learned per CPU-second while every model still streams at least 1.5x
real time at 16 kHz on two CPU cores (see docs/models.md for the measurements behind them):

- ``speech-wavernn``: 128-unit GRUs, order-16 linear prediction from the mel (LPCNet's split: the
  prediction supplies the envelope, an 8-bit mu-law softmax models the excitation), short segments
  (the GRU is sequential over the segment, so many short ones learn fastest). Until 2026-11-27 it was
  the plain 8-bit mu-law WaveRNN (the same config with ``lpc_order`` 0), which the LPC one beats on
  every copy-synthesis metric (docs/models.md).
- ``speech-waveglow``: 6 small flows; the mel upsampler spans one hop (its 80x80x200 weights are half the
  size). Since 2026-11-27 over the excitation of the same order-16 prediction (``lpc_order``): the flows
  model what the prediction misses and generation synthesises it through the mel's all-pole filter.
- ``speech-wavenet``: one cycle of 10 dilated layers (receptive field 1024 samples) of 32 channels, over
  the LPC excitation as WaveGlow (since 2026-11-27; the waveform model it replaced needed 13 dB MCD
  after 605 steps where the excitation model had 6.1 dB after 300).
- ``music-wavenet``: unconditional, two cycles (2047 samples, 128 ms), trained on rendered Bach.

GPU schedules keep the networks (a bundle must still run on a laptop) and train them far longer
with large bf16 batches.
"""

from __future__ import annotations

from studio.engine.recipes.spec import DeviceSchedule, Recipe

SPEECH = "speech16k"

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="speech-wavernn",
            family="wavernn",
            profile=SPEECH,
            config={
                "mode": "mulaw", "bits": 8, "rnn_dims": 128, "fc_dims": 128, "res_blocks": 2,
                "compute_dims": 32, "res_out_dims": 32, "pad": 2, "lpc_order": 16,
                "sampling_temperature": 0.9,  # measured on the held-out speech (docs/models.md)
                "spectral_projection": 64,  # the output's mel brought to the input's (docs/models.md)
            },
            dataset="festvox-ru",
            cpu=DeviceSchedule(batch=32, segment_hops=4, steps=2000, lr=2e-3, warmup_steps=20),
            cuda=DeviceSchedule(batch=256, segment_hops=8, steps=20000, lr=2e-3, warmup_steps=200, amp="bf16",
                                checkpoint_every=1000),
            description="LPC WaveRNN speech vocoder (order-16 linear prediction from the mel, 8-bit mu-law "
            "excitation, 128-unit GRUs), 16 kHz, festvox-ru male Russian speaker",
        ),
        Recipe(
            name="speech-waveglow",
            family="waveglow",
            profile=SPEECH,
            config={
                "n_flows": 6, "n_group": 8, "n_early_every": 2, "n_early_size": 2, "wn_layers": 4,
                "wn_channels": 32, "wn_kernel_size": 3, "upsample_window": 200, "lpc_order": 16,
                "spectral_projection": 64,  # the output's mel brought to the input's (docs/models.md)
            },
            dataset="festvox-ru",
            cpu=DeviceSchedule(batch=4, segment_hops=10, steps=3000, lr=1e-3, warmup_steps=50),
            cuda=DeviceSchedule(batch=64, segment_hops=40, steps=50000, lr=5e-4, warmup_steps=500, amp="bf16",
                                checkpoint_every=2000),
            description="LPC WaveGlow speech vocoder (order-16 linear prediction from the mel, 6 flows with WN 4x32 over "
            "the excitation), 16 kHz, festvox-ru male Russian speaker",
        ),
        Recipe(
            name="speech-wavenet",
            family="wavenet",
            profile=SPEECH,
            config={
                "kernel_size": 2, "layers": 10, "dilation_cycle": 10, "residual_channels": 32,
                "gate_channels": 64, "skip_channels": 64, "mu_bits": 8, "cond_channels": 32, "lpc_order": 16,
                "sampling_temperature": 0.9,  # measured on the held-out speech (docs/models.md)
                "spectral_projection": 64,  # the output's mel brought to the input's (docs/models.md)
            },
            dataset="festvox-ru",
            cpu=DeviceSchedule(batch=8, segment_hops=20, steps=400, lr=2e-3, warmup_steps=20),
            cuda=DeviceSchedule(batch=64, segment_hops=40, steps=30000, lr=1e-3, warmup_steps=300, amp="bf16",
                                checkpoint_every=1000),
            description="LPC WaveNet speech vocoder (order-16 linear prediction from the mel, 10 layers x 32 ch over the "
            "8-bit mu-law excitation), 16 kHz, festvox-ru male Russian speaker",
        ),
        Recipe(
            name="music-wavenet",
            family="wavenet",
            profile=SPEECH,
            config={
                "kernel_size": 2, "layers": 20, "dilation_cycle": 10, "residual_channels": 32,
                "gate_channels": 64, "skip_channels": 64, "mu_bits": 8, "n_mels": 0,
            },
            dataset="music",
            prepare={"minutes": 20.0},
            cpu=DeviceSchedule(batch=8, segment_hops=20, steps=250, lr=2e-3, warmup_steps=20),
            cuda=DeviceSchedule(batch=64, segment_hops=40, steps=30000, lr=1e-3, warmup_steps=300, amp="bf16",
                                checkpoint_every=1000),
            description="Unconditional WaveNet (20 layers x 32 ch, 8-bit mu-law), 16 kHz piano music: "
            "music21 Bach rendered with fluidsynth + TimGM6mb",
            vocoder=False,
        ),
    )
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError listing the recipes otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe '{name}'; recipes: {', '.join(RECIPES)}") from None
