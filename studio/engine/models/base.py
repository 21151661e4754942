"""One interface for every model family.

A family is a ``WaveformModel`` subclass (a plain ``nn.Module``) with a frozen config dataclass. The
studio, the CLI, training and the benchmark only ever talk to this interface:

- ``model.stream(request)`` yields float32 numpy blocks of audio in [-1, 1] at
  ``model.sample_rate``, in order, as they are made (autoregressive families yield every few hundred
  samples; parallel families per segment). It checks ``request.cancel`` between blocks and stops
  yielding when cancelled, so what was made so far is kept by the caller (a model with a spectral
  projection first hands over what its projector still held). A mel-conditioned model's output goes
  through its ``spectral_projection`` (``studio.engine.audio.projection``) when its config or the
  request asks for one.
- ``model.training_loss(audio, mel)`` is what the training loop minimises.
- ``model.card()`` describes the model (``ModelCard``), and is saved next to the weights.

Threads: ``stream`` runs on whichever thread iterates it (a worker thread in the studio); the cancel
token and progress callback are safe to use from another thread.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from studio.engine.audio.features import FeatureProfile
from studio.engine.models.card import ModelCard
from studio.engine.models.generation_settings import PROJECTION_OPTION, GenerationSettings

log = logging.getLogger(__name__)


class CancelToken:
    """A thread-safe flag: the GUI thread cancels, the generating thread checks between blocks.

    A token made with ``parent`` (or by ``parent.child()``) reads as cancelled when it or its parent
    is; cancelling it leaves the parent alone (a time box inside a run stops that run, not its caller).
    """

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def cancel(self) -> None:
        self._event.set()

    def child(self) -> CancelToken:
        """A token cancelled with this one, that can also be cancelled on its own."""
        return CancelToken(parent=self)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)


ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(samples_done, samples_total)`` from the generating thread."""


@dataclass
class GenerateRequest(GenerationSettings):
    """What to generate, and how (the ``GenerationSettings``, keyword-only).

    mel: conditioning frames, float32 array [n_mels, frames] made with the model's feature profile
        (see ``studio.engine.audio.features``), or None for unconditional generation.
    num_samples: output length in samples. With a mel it defaults to ``frames * hop_length``; without
        one it is required.
    cancel: checked between blocks; when set, ``stream`` stops yielding.
    progress: called after each block with (samples_done, samples_total).
    """

    mel: np.ndarray | None = None
    num_samples: int | None = None
    cancel: CancelToken | None = None
    progress: ProgressCallback | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled


def check_sampling_temperature(value: float) -> None:
    """Validate an autoregressive config's ``sampling_temperature``: the temperature a request's 1.0
    stands for with this model (a post-training calibration: a slightly sharpened distribution sounds
    cleaner than the trained one, docs/models.md). Positive and finite; 1.0 = the trained distribution."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"sampling_temperature must be a positive number (1.0 = as trained), got {value!r}")


class WaveformModel(nn.Module, ABC):
    """Base class of the model families.

    Subclasses set ``family`` and ``config_class``, take ``(config, profile)`` in ``__init__`` and
    implement ``training_loss``, ``receptive_field`` and ``_generate``; ``stream`` adds seeding,
    device placement, cancellation and progress around ``_generate``.
    """

    family: ClassVar[str]
    config_class: ClassVar[type]
    supports_distribution: ClassVar[bool] = False
    """True when ``stream`` honours ``options['on_distribution']`` (see ``studio.engine.models.distribution``)."""

    @property
    def supports_denoise(self) -> bool:
        """True when ``GenerateRequest.denoise`` > 0 is accepted (WaveGlow's bias denoiser; False
        for families without one, which ignore the strength)."""
        return False

    def __init__(self, config: Any, profile: FeatureProfile) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.profile = profile
        self.name = self.family
        self.extra_card: dict[str, Any] = {"provenance": {}, "training": {}, "metrics": {}, "description": ""}

    warm_start_fields: ClassVar[tuple[str, ...]] = ()
    """Config fields a warm start may change (``reconfigured``): training-only settings, and inputs a
    copy can add with zero weights so that it computes what the model did until it is trained."""

    def reconfigured(self, changes: dict[str, Any]) -> WaveformModel:
        """A copy of this model (weights, name, card) with ``changes`` to ``warm_start_fields``;
        ValueError for any other field. Families that allow none accept only an empty change."""
        refused = sorted(set(changes) - set(self.warm_start_fields))
        if refused:
            allowed = ", ".join(self.warm_start_fields) or "none"
            raise ValueError(f"a warm start of a {self.family} cannot change {', '.join(refused)} (it may change: {allowed})")
        if not changes:
            return self
        return self._reconfigured(changes)

    def _reconfigured(self, changes: dict[str, Any]) -> WaveformModel:
        """A copy built from the changed config with this model's weights (``_state_for``), name and card."""
        config = dataclasses.replace(self.config, **changes)
        state = self._state_for(config)
        model = type(self)(config, self.profile).to(next(self.parameters()).device)
        model.load_state_dict(state)
        model.name, model.extra_card = self.name, copy.deepcopy(self.extra_card)
        model.train(self.training)
        return model

    def _state_for(self, config: Any) -> dict[str, torch.Tensor]:
        """This model's weights for a copy with ``config`` (ValueError when it cannot have them): as they
        are, right for fields that change no weight's shape (generation settings). Families whose warm
        start may add inputs override it."""
        return self.state_dict()

    # -- what a family provides -------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.profile.sample_rate

    @property
    def conditioned(self) -> bool:
        """True when the model needs mel frames (``GenerateRequest.mel``)."""
        return bool(getattr(self.config, "n_mels", 0))

    @property
    @abstractmethod
    def receptive_field(self) -> int:
        """Samples of past audio that influence the next sample (1 for non-autoregressive models)."""

    @abstractmethod
    def training_loss(self, audio: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        """Scalar loss for a batch.

        audio: float32 [B, T] in [-1, 1] at ``sample_rate``; T is a multiple of ``hop_length``.
        mel: float32 [B, n_mels, T // hop_length] from the shared front end, or None when unconditioned.
        """

    @abstractmethod
    def _generate(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """Yield 1-D float tensors of consecutive samples until ``num_samples`` are made.

        mel: [1, n_mels, frames] on the request's device, or None. Check ``request.cancelled``
        between blocks and return when it is set. Draw all randomness from ``generator``.
        """

    # -- shared machinery ---------------------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def card(self) -> ModelCard:
        return ModelCard(
            family=self.family,
            name=self.name,
            config=dataclasses.asdict(self.config),
            profile=self.profile,
            sample_rate=self.sample_rate,
            receptive_field=self.receptive_field,
            parameters=self.parameter_count(),
            conditioning="mel" if self.conditioned else "none",
            description=self.extra_card.get("description", ""),
            provenance=dict(self.extra_card.get("provenance", {})),
            training=dict(self.extra_card.get("training", {})),
            metrics=dict(self.extra_card.get("metrics", {})),
        )

    def resolve_length(self, request: GenerateRequest) -> int:
        if request.mel is not None:
            frames = int(request.mel.shape[-1])
            default = frames * self.profile.hop_length
            n = default if request.num_samples is None else min(int(request.num_samples), default)
            if request.num_samples is not None and int(request.num_samples) > default:
                log.warning(
                    "asked for %d samples but the mel's %d frames cover %d: generating %d",
                    int(request.num_samples), frames, default, default,
                )
        elif request.num_samples is None:
            raise ValueError("num_samples is required for unconditional generation")
        else:
            n = int(request.num_samples)
        if n <= 0:
            raise ValueError(f"nothing to generate: num_samples={n}")
        return n

    def check_mel(self, mel: np.ndarray | None) -> None:
        if self.conditioned and mel is None:
            raise ValueError(f"{self.family} model '{self.name}' is mel-conditioned: give mel frames")
        if mel is None:
            return
        if mel.ndim != 2 or mel.shape[0] != self.profile.n_mels:
            raise ValueError(
                f"mel must be [n_mels={self.profile.n_mels}, frames], got shape {tuple(mel.shape)}"
            )
        if not np.all(np.isfinite(mel)):
            raise ValueError("mel holds NaN or Inf values")

    def projection_iterations(self, request: GenerateRequest) -> int | None:
        """The spectral projection this request gets (``studio.engine.audio.projection``): the request's
        ``options["spectral_projection"]`` when it has that key (None = off, else 0..MAX_ITERATIONS),
        else the config's ``spectral_projection`` (None for families and cards without one). Always
        None without a mel: the projection's targets come from it. ValueError for a bad value."""
        from studio.engine.audio.projection import check_iterations

        if not self.conditioned:
            return None
        options = request.options or {}
        iterations = options[PROJECTION_OPTION] if PROJECTION_OPTION in options else getattr(self.config, "spectral_projection", None)
        check_iterations(iterations)
        return None if iterations is None else int(iterations)

    def stream(self, request: GenerateRequest) -> Iterator[np.ndarray]:
        """Yield float32 numpy blocks (1-D, in [-1, 1]) until done or cancelled. See module doc.

        An autoregressive family whose config has a ``sampling_temperature`` (a calibration stored with
        the model, see ``check_sampling_temperature``) samples at ``request.temperature`` times it. A
        ``projection_iterations`` other than None sends the family's blocks through a
        ``projection.Projector`` (the same audio as projecting the whole output, yielded about half a
        second of audio later); when cancelled, the family stops after its current block and the
        projector's pending output (at most about a second of audio, ~0.1 s of CPU) still comes, so
        what the network made is kept."""
        calibration = float(getattr(self.config, "sampling_temperature", 1.0))
        if calibration != 1.0:
            request = dataclasses.replace(request, temperature=request.temperature * calibration)
        self.check_mel(request.mel)
        iterations = self.projection_iterations(request)
        mel_in = request.mel if self.conditioned else None
        total = self.resolve_length(request)
        blocks = self._family_blocks(request, mel_in, total)
        if iterations is not None:
            from studio.engine.audio.projection import Projector, projected

            blocks = projected(blocks, Projector(mel_in, self.profile, iterations, total))
        done = 0
        for out in blocks:
            done += out.shape[0]
            if request.progress is not None:  # before the yield: a consumer that stops after the
                request.progress(done, total)  # last block still sees done == total
            yield out
            if request.cancelled and iterations is None:
                return  # (a projection drains: the family stops after its block, the projector's rest follows)

    def _family_blocks(self, request: GenerateRequest, mel_in: np.ndarray | None, total: int) -> Iterator[np.ndarray]:
        """The family's ``_generate`` as float32 numpy blocks in [-1, 1], cut to ``total`` samples,
        with seeding, device placement and inference mode; stops after a block once cancelled."""
        device = torch.device(request.device)
        if next(self.parameters()).device != device:
            self.to(device)
        self.eval()
        generator = torch.Generator(device=device)
        generator.manual_seed(int(request.seed))
        mel_t = None
        if mel_in is not None:
            mel_t = torch.from_numpy(np.ascontiguousarray(mel_in, dtype=np.float32)).unsqueeze(0).to(device)
        done = 0
        with torch.inference_mode():
            for block in self._generate(request, mel_t, total, generator):
                if done >= total:
                    break
                out = block.detach().float().clamp_(-1.0, 1.0).cpu().numpy().reshape(-1)[: total - done]
                done += out.shape[0]
                yield out.astype(np.float32, copy=False)
                if request.cancelled:
                    return

    def generate(self, request: GenerateRequest) -> np.ndarray:
        """All of ``stream`` joined into one float32 array (what was made if cancelled)."""
        blocks = list(self.stream(request))
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


@dataclass
class Family:
    """A registered model family: its name, config dataclass and module class."""

    name: str
    config_class: type
    model_class: type[WaveformModel]


FAMILIES: dict[str, Family] = {}


def register_family(model_class: type[WaveformModel]) -> type[WaveformModel]:
    """Class decorator used by each family module."""
    FAMILIES[model_class.family] = Family(model_class.family, model_class.config_class, model_class)
    return model_class


def get_family(name: str) -> Family:
    """The family called ``name`` (importing the family modules on first use)."""
    import studio.engine.models.families  # noqa: F401  (registers every family)

    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family '{name}'; known: {', '.join(sorted(FAMILIES))}") from None


def build_model(family: str, config: dict[str, Any] | Any, profile: FeatureProfile) -> WaveformModel:
    """Build a model of ``family`` from a config dataclass or a dict of its fields (unknown keys refused)."""
    fam = get_family(family)
    if isinstance(config, dict):
        known = {f.name for f in dataclasses.fields(fam.config_class)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown {family} config fields: {sorted(unknown)}")
        config = fam.config_class(**config)
    return fam.model_class(config, profile)


class Stopwatch:
    """Wall-clock timing helper for progress and benchmarks (seconds, monotonic)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
