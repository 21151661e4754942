"""Which networks the benchmark runs: reference sizes, the studio's default models, tiny test sizes.

- ``reference``: the sizes of the published models the targets were set for (random weights; speed
  does not depend on what the weights are). See ``REFERENCE``.
- ``default``: the bundled model of the family (``resources/models``) when there is one; otherwise
  the config a new ``studio train`` run of that family starts from (``train.options.FAMILY_RECIPES``)
  with random weights, and the result says so (``ModelSpec.source``).
- ``tiny``: a few channels, for tests of the benchmark itself.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from studio.engine.audio.features import FeatureProfile, get_profile
from studio.engine.models.base import WaveformModel, build_model, get_family

log = logging.getLogger(__name__)

SIZES = ("reference", "default", "tiny")
FAMILIES = ("wavenet", "wavernn", "waveglow")


@dataclass(frozen=True)
class SizeSpec:
    """A config (dict of family config fields) and the feature preset it runs with."""

    profile: str
    config: dict[str, Any]
    note: str


REFERENCE: dict[str, SizeSpec] = {
    # 24 layers in 4 cycles of dilations 1..32, kernel 3, 128 residual / 256 gate / 128 skip channels,
    # 80-band mel upsampled x256, 256 mu-law classes, 22050 Hz
    "wavenet": SizeSpec(
        profile="waveglow",
        config={
            "kernel_size": 3, "layers": 24, "dilation_cycle": 6, "residual_channels": 128, "gate_channels": 256,
            "skip_channels": 128, "mu_bits": 8, "n_mels": 80, "cond_channels": 80, "upsample_scales": [4, 4, 4, 4],
        },
        note="reference size (24 layers / 4 cycles, k=3, 128/256/128 ch, 256 classes), random weights",
    ),
    # two GRUs of 512, fc 512, 9-bit mu-law, mel resnet 10 blocks of 128, upsampling 5*5*11 (hop 275)
    "wavernn": SizeSpec(
        profile="wavernn",
        config={
            "mode": "mulaw", "bits": 9, "rnn_dims": 512, "fc_dims": 512, "n_mels": 80, "upsample_scales": [5, 5, 11],
            "res_blocks": 10, "compute_dims": 128, "res_out_dims": 128, "pad": 2,
        },
        note="reference size (2 GRUs of 512, fc 512, 9-bit mu-law, resnet 10x128, hop 275), random weights",
    ),
    # 12 flows, groups of 8, 2 channels out early every 4 flows, WN 8 layers x 256 ch, kernel 3
    "waveglow": SizeSpec(
        profile="waveglow",
        config={
            "n_mels": 80, "n_flows": 12, "n_group": 8, "n_early_every": 4, "n_early_size": 2, "wn_layers": 8,
            "wn_channels": 256, "wn_kernel_size": 3, "upsample_window": 1024,
        },
        note="reference size (12 flows, group 8, early 2 every 4, WN 8 x 256, k=3), random weights",
    ),
}

TINY: dict[str, SizeSpec] = {
    "wavenet": SizeSpec(
        profile="speech16k",
        config={
            "kernel_size": 2, "layers": 4, "dilation_cycle": 2, "residual_channels": 8, "gate_channels": 16,
            "skip_channels": 8, "mu_bits": 6, "n_mels": 80, "cond_channels": 8, "upsample_scales": [10, 20],
        },
        note="tiny test size, random weights",
    ),
    "wavernn": SizeSpec(
        profile="wavernn",
        config={
            "mode": "mulaw", "bits": 6, "rnn_dims": 16, "fc_dims": 16, "n_mels": 80, "upsample_scales": [5, 5, 11],
            "res_blocks": 1, "compute_dims": 8, "res_out_dims": 8, "pad": 1,
        },
        note="tiny test size, random weights",
    ),
    "waveglow": SizeSpec(
        profile="waveglow",
        config={
            "n_mels": 80, "n_flows": 2, "n_group": 4, "n_early_every": 1, "n_early_size": 0, "wn_layers": 2,
            "wn_channels": 8, "wn_kernel_size": 3, "upsample_window": 256,
        },
        note="tiny test size, random weights",
    ),
}


@dataclass
class ModelSpec:
    """A built model and where it came from (``source``: "bundled", "training default", "reference", "tiny")."""

    model: WaveformModel
    source: str
    note: str
    config: dict[str, Any]


def _build(family: str, spec: SizeSpec, source: str, seed: int) -> ModelSpec:
    import torch

    profile: FeatureProfile = get_profile(spec.profile)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(family, dict(spec.config), profile)
    _randomise_zero_init(model, seed)
    return ModelSpec(model.eval(), source, spec.note, dataclasses.asdict(model.config))


def _randomise_zero_init(model: WaveformModel, seed: int) -> None:
    """Give zero-initialised weights (e.g. WaveGlow's ``end`` layers) small random values.

    Speed does not depend on the weights, but an all-zero output layer makes a flow the identity and
    a mu-law head uniform; small random values exercise the same arithmetic as a trained model.
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not torch.any(p):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)


def bundled_models(family: str) -> list[WaveformModel]:
    """Every bundled checkpoint of ``family`` (in catalogue order), loaded; empty when none is bundled."""
    from studio.engine.catalog import bundled_models_dir, scan_models
    from studio.engine.checkpoints import load_model

    folder = bundled_models_dir()
    if folder is None:
        return []
    return [
        load_model(entry.path, family=family)
        for entry in scan_models([(folder, True)]).entries
        if entry.card.family == family
    ]


def bundled_model(family: str) -> WaveformModel | None:
    """The first bundled checkpoint of ``family`` (by name), loaded; None when none is bundled."""
    models = bundled_models(family)
    return models[0] if models else None


def training_default_spec(family: str) -> SizeSpec:
    """The config a fresh ``studio train --family FAMILY`` starts from, fitted to its feature preset."""
    from studio.engine.train.options import fit_config_to_profile, recipe_for

    recipe = recipe_for(family)
    profile = get_profile(recipe.profile)
    fields = {f.name for f in dataclasses.fields(get_family(family).config_class)}
    config = fit_config_to_profile(fields, dict(recipe.config), set(), profile)
    config = {k: v for k, v in config.items() if k in fields}
    return SizeSpec(recipe.profile, config, "")


def models_for(family: str, size: str, seed: int = 0) -> list[ModelSpec]:
    """Like ``model_for``, but for ``size="default"`` every bundled model of the family (each vocoder is
    held to the default-model targets), or the training default when none is bundled."""
    if size == "default" and family in FAMILIES:
        bundled = bundled_models(family)
        if bundled:
            return [
                ModelSpec(m, "bundled", f"bundled model '{m.name}'", dataclasses.asdict(m.config)) for m in bundled
            ]
    return [model_for(family, size, seed)]


def model_for(family: str, size: str, seed: int = 0) -> ModelSpec:
    """Build (or load) the ``family`` network of ``size`` (one of ``SIZES``) in eval mode on the CPU."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    if size == "reference":
        return _build(family, REFERENCE[family], "reference", seed)
    if size == "tiny":
        return _build(family, TINY[family], "tiny", seed)
    if size != "default":
        raise ValueError(f"unknown size {size!r}; one of {', '.join(SIZES)}")
    model = bundled_model(family)
    if model is not None:
        return ModelSpec(model, "bundled", f"bundled model '{model.name}'", dataclasses.asdict(model.config))
    spec = training_default_spec(family)
    note = (
        f"no bundled {family} model: using the training default config "
        f"(studio train --family {family}, profile '{spec.profile}') with random weights"
    )
    log.info(note)
    built = _build(family, dataclasses.replace(spec, note=note), "training default", seed)
    return built
