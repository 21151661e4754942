"""Benchmark cases: for each family, the fast streaming path(s) and the plain baseline they are compared to.

A case is one way the studio generates with a family (``single``: one autoregressive stream;
``folded``: overlapping segments as one batch; ``parallel``: WaveGlow's chunked flow). Every case has
a baseline, the plain computation of the same network:

- WaveNet: ``generate_plain`` — the full network over the last ``receptive_field`` samples, per sample;
- WaveRNN: ``generate_plain`` — eager nn modules, one sample at a time, unbatched;
- WaveGlow: ``infer`` of the weight-normed network in float32 eager mode, the whole utterance at once.

Baselines are slow, so they run on a shorter input (``baseline_samples``) and only rates are compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from studio.engine.audio import lpc
from studio.engine.models.base import PROJECTION_OPTION, GenerateRequest, WaveformModel

AUTOREGRESSIVE_BLOCK = 256
"""Samples per yielded block of the autoregressive families (what the studio's generation worker asks)."""


@dataclass(frozen=True)
class Case:
    """One fast path of a family: stream ``options`` and a short human description."""

    family: str
    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    block_size: int = 2048


Baseline = Callable[[WaveformModel, np.ndarray, int, int, str], int]
"""``baseline(model, mel [n_mels, frames], num_samples, seed, device) -> samples made``."""


def _frames_for(model: WaveformModel, mel: np.ndarray, n: int) -> np.ndarray:
    """The mel frames that cover ``n`` samples, so a short baseline does not pay for the whole input's
    conditioning network."""
    return np.ascontiguousarray(mel[:, : -(-n // model.profile.hop_length)], np.float32)


def _wavenet_baseline(model: WaveformModel, mel: np.ndarray, n: int, seed: int, device: str) -> int:
    request = GenerateRequest(mel=_frames_for(model, mel, n), num_samples=n, seed=seed, device=device, block_size=n)
    return int(model.generate_plain(request).shape[0])


def _wavernn_baseline(model: WaveformModel, mel: np.ndarray, n: int, seed: int, device: str) -> int:
    mel_t = torch.from_numpy(_frames_for(model, mel, n)).unsqueeze(0).to(device)
    model.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    # threads=None: the process's own thread setting, as a plain PyTorch program would run
    out = model.generate_plain(mel_t, n, generator, temperature=1.0, threads=None)
    return int(out.shape[0])


def _waveglow_baseline(model: WaveformModel, mel: np.ndarray, n: int, seed: int, device: str) -> int:
    mel_t = torch.from_numpy(_frames_for(model, mel, n)).unsqueeze(0).to(device)
    model.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    audio = model.infer(mel_t, sigma=0.6, generator=generator)
    if getattr(model.config, "lpc_order", 0):  # an LPC model's excitation still needs its synthesis filter
        audio = torch.cat(list(lpc.synthesised([audio[0]], mel_t[0], model.profile, model.config.lpc_order)))
    return int(audio.shape[-1])


BASELINES: dict[str, Baseline] = {
    "wavenet": _wavenet_baseline,
    "wavernn": _wavernn_baseline,
    "waveglow": _waveglow_baseline,
}

BASELINE_DESCRIPTIONS = {
    "wavenet": "generate_plain: the whole network over the receptive field, recomputed per sample",
    "wavernn": "generate_plain: eager nn modules, one sample at a time, unbatched",
    "waveglow": "infer: eager float32 with weight norm, whole input at once (+ the LPC synthesis filter of an LPC model)",
}

BASELINE_PROBE_SAMPLES = {"wavenet": 16, "wavernn": 64, "waveglow": 0}
"""Samples of a first short baseline run that sizes the measured one (0: 8 mel frames)."""


def supports_option(model: WaveformModel, name: str) -> bool:
    """Whether the family documents a stream option ``name`` (its ``STREAM_OPTIONS``, when it has one)."""
    return name in getattr(type(model), "STREAM_OPTIONS", ())


def cases_for(model: WaveformModel, device: str = "cpu", projection: int | None = None) -> list[Case]:
    """The cases the benchmark runs for ``model``'s family on ``device`` (on CUDA WaveGlow also runs
    in float16 autocast, its ``fp16`` stream option); with ``projection`` each case also runs with
    that spectral projection (``NAME+projection``; the plain cases run with it off)."""
    cases = _family_cases(model, device)
    if projection is None:
        return cases
    return [variant for case in cases for variant in (case, dataclasses.replace(
        case, name=f"{case.name}+projection", description=f"{case.description}; spectral projection, {projection} passes after the first",
        options={**case.options, PROJECTION_OPTION: projection},
    ))]


def _family_cases(model: WaveformModel, device: str) -> list[Case]:
    family = model.family
    if family == "wavenet":
        cases = [
            Case(family, "single", "one stream, cached dilated-convolution queues", {}, AUTOREGRESSIVE_BLOCK)
        ]
        if supports_option(model, "folded"):
            cases.append(
                Case(family, "folded", "overlapping segments as one batch (native: ~8 per worker thread)",
                     {"folded": True}, AUTOREGRESSIVE_BLOCK)
            )
        return cases
    if family == "wavernn":
        return [
            Case(family, "single", "one stream, conditioning projected up front", {}, AUTOREGRESSIVE_BLOCK),
            Case(family, "folded", "about 16 folds of 8-40 hops, 2 hops overlap, as one batch", {"folded": True},
                 AUTOREGRESSIVE_BLOCK),
        ]
    if family == "waveglow":
        cases = [Case(family, "parallel", "weight norm folded, chunked exact streaming", {}, 2048)]
        if torch.device(device).type == "cuda" and supports_option(model, "fp16"):
            cases.append(Case(family, "parallel-fp16", "the same in float16 autocast", {"fp16": True}, 2048))
        return cases
    raise ValueError(f"no benchmark cases for family {family!r}")


def fast_model(model: WaveformModel) -> WaveformModel:
    """The model as the studio runs it: WaveGlow with weight norm folded (a copy; the baseline keeps it)."""
    if model.family == "waveglow" and getattr(model, "weight_norm_active", False):
        # not copy.deepcopy: a deep copy shares the parametrized class with the original, and removing
        # weight norm from the copy would strip the ``weight`` property from the original too
        fast = type(model)(model.config, model.profile)
        fast.load_state_dict(model.state_dict())
        fast.remove_weight_norm()
        return fast.to(next(model.parameters()).device).eval()
    return model


def request_for(case: Case, mel: np.ndarray, num_samples: int, seed: int, device: str, **options) -> GenerateRequest:
    """The ``GenerateRequest`` of a fast run of ``case``."""
    return dataclasses.replace(
        GenerateRequest(mel=mel, num_samples=num_samples, seed=seed, device=device, block_size=case.block_size),
        options={PROJECTION_OPTION: None, **case.options, **options},  # a bundled model's own projection is off
    )
