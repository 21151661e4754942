"""WaveNet: an autoregressive vocoder / generator over mu-law classes (van den Oord et al. 2016).

Input representation: the previous sample's mu-law class goes through an ``nn.Embedding`` of
``residual_channels`` (mathematically a one-hot vector times a 1x1 convolution, without building the
one-hot). The network then applies ``layers`` gated residual blocks, each a causal dilated
convolution (left padding only) with dilation ``2 ** (i % dilation_cycle)``, a gate
``tanh(a) * sigmoid(b)`` (``gate_channels`` split in two halves) plus local (mel) and global
(speaker) conditioning biases, and one fused 1x1 convolution to residual and skip channels. The
summed skips (scaled by sqrt(1/layers)) go through ReLU -> 1x1 -> ReLU -> 1x1 to logits over
``2 ** mu_bits`` classes. Residual sums are scaled by sqrt(1/2).

Time alignment (teacher forcing): ``forward(inputs, cond)`` gives at position ``t`` the distribution of
the sample that follows ``inputs[:, t]``, conditioned on ``cond[:, :, t]``. For audio classes ``x``,
``inputs = [silence, x_0, ..., x_{T-2}]`` and ``cond[t]`` is the conditioning of sample ``t``, so logits
``t`` predict ``x_t`` from ``x_{<t}`` and the mel frame ``t // hop`` (plus a bounded neighbourhood, see
``wavenet_upsample``).

Generation: ``_generate`` (used by ``stream``) runs ``wavenet_fast.IncrementalWaveNet``, with cached
per-layer rings, so each sample costs O(layers). ``generate_plain`` (or ``options={"plain": True}``)
recomputes the receptive field for every sample: the benchmark's baseline and the tests' reference.
Both paths draw the same noise from the request's generator (Gumbel-max sampling in blocks of
``NOISE_BLOCK`` samples), so with the same seed they give the same samples.

Request options: ``speaker`` (int, default 0) for multi-speaker models; ``plain`` (bool, the slow
path); ``folded`` (bool: segments generated as one batch and cross-faded, see ``wavenet_fold``) with
``fold_length`` and ``fold_overlap`` (samples) or ``fold_batch`` (folds to aim for); ``threads`` (torch intra-op threads while stepping,
default 1 on the fast paths: with a few hundred tiny ops per sample, one thread measured 2x faster than
two on a 2-core machine, 10x under load; the plain path keeps the process setting unless given; for the
native folded loop: its worker threads, default ``wavenet_native.default_fold_threads()``); ``native``
(bool, default True: the C step loops of ``wavenet_native`` on CPU float32 weights, single and folded);
``on_distribution`` / ``distribution_stride``: a live view of the predicted distribution (see
``studio.engine.models.distribution``; folded: the first segment's stream, up to ``fold_length`` + its
warm-up; the native loop then also copies each run's logits out, which changes no sample).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.engine.audio import lpc
from studio.engine.audio.features import FeatureProfile
from studio.engine.audio.mulaw import mulaw_decode, mulaw_encode
from studio.engine.audio.projection import check_model_setting
from studio.engine.models.base import (
    GenerateRequest,
    WaveformModel,
    check_sampling_temperature,
    register_family,
)
from studio.engine.models.distribution import DistributionTap
from studio.engine.models.fast_linear import Affine
from studio.engine.models.wavenet_fast import IncrementalWaveNet, StepperCancelled, intra_op_threads
from studio.engine.models.wavenet_fold import generate_folded
from studio.engine.models.wavenet_upsample import UPSAMPLE_MODES, MelUpsampler

MAX_LPC_ORDER = lpc.MAX_ORDER
NOISE_BLOCK = 512
"""Samples of sampling noise drawn from the generator at a time (fixed, so output is independent of block size)."""

SINGLE_CHUNK_STEPS = 1024
"""Most steps whose conditioning biases one stream computes at once (2.6 MB for the bundled model).
The native loop writes them into one reused buffer: with a fresh 10 MB tensor per 4096-step chunk,
glibc's heap fragmented and the resident size grew by 0.26-0.8 GB over 60 s of audio (``studio bench
--memory``, varying from run to run); with the buffer it stays within ~30 MB."""

NOISE_PIECE_VALUES = 1 << 18
"""Most noise values drawn at once (1 MiB: a few ms), see ``_NoiseStream``."""

CANCEL_CHECK_EVERY = 1
"""Samples between two looks at the cancel flag: every step (a look costs ~0.1 µs; a folded step of a large
batch can take several ms on a loaded machine, so sparser looks broke the 200 ms cancel bound)."""

NATIVE_RUN_SECONDS = (0.002, 0.01)
"""Wall time one call of the native loop aims for (between two looks at the cancel flag): the steps per
call double below the first bound and halve above the second (1-512 steps)."""

COND_CHUNK_VALUES = 1 << 22
"""Upper bound on the floats of per-layer conditioning biases held at once during generation (16 MB)."""


@dataclass(frozen=True)
class WaveNetConfig:
    """Shape of a WaveNet. All sizes are channels unless said otherwise.

    kernel_size: taps of each dilated convolution (2 or 3). layers: gated residual blocks.
    dilation_cycle: dilations run 1, 2, 4, ..., 2**(dilation_cycle-1) and repeat (``layers /
    dilation_cycle`` stacks). residual_channels, gate_channels (even: tanh half + sigmoid half),
    skip_channels. mu_bits: mu-law bits, ``2**mu_bits`` output classes. n_mels: mel bands of the local
    conditioning (0 = unconditional). cond_channels: width of the upsampled conditioning.
    upsample_scales: their product must equal the feature profile's hop length; empty (the default)
    = chosen from the hop by ``auto_upsample_scales`` (256 -> (4, 4, 4, 4), 200 -> (5, 5, 8)). upsample_mode:
    "transposed" (learned transposed convolutions) or "nearest" (repeat + smoothing convolution).
    mel_context: frames either side seen by the mel context convolution. n_speakers / speaker_dim:
    global conditioning by a speaker embedding (0 = none). dropout: on each block's input, training only.
    lpc_order: 0 (models the waveform) or the order of the linear prediction computed from the mel
    (``studio.engine.audio.lpc``, 16 as LPCNet): the network then models the prediction's excitation
    (the pre-emphasised audio minus its prediction from the real past) and generation runs what it
    draws through the mel's all-pole filter and de-emphasis, so the envelope comes from DSP (mel only).
    sampling_temperature: the temperature a request's 1.0 stands for (a calibration stored with the
    model, ``base.check_sampling_temperature``; 1.0 = the trained distribution).
    spectral_projection: None (the default: the output as the network and filter make it) or the
    passes, after the first, that bring the output's mel to the conditioning mel
    (``studio.engine.audio.projection``; 0 = one pass): a generation setting stored
    with the model, like ``sampling_temperature``; a request's ``options["spectral_projection"]``
    overrides it. Needs a mel.
    """

    kernel_size: int = 2
    layers: int = 20
    dilation_cycle: int = 10
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 64
    mu_bits: int = 8
    n_mels: int = 80
    cond_channels: int = 80
    upsample_scales: tuple[int, ...] = ()
    upsample_mode: str = "transposed"
    mel_context: int = 1
    n_speakers: int = 0
    speaker_dim: int = 16
    dropout: float = 0.0
    lpc_order: int = 0
    sampling_temperature: float = 1.0
    spectral_projection: int | None = None

    def __post_init__(self) -> None:
        # JSON round trips turn the tuple into a list
        object.__setattr__(self, "upsample_scales", tuple(int(s) for s in self.upsample_scales))
        if self.kernel_size not in (2, 3):
            raise ValueError(f"kernel_size must be 2 or 3, got {self.kernel_size}")
        for name in ("layers", "dilation_cycle", "residual_channels", "gate_channels", "skip_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.gate_channels % 2:
            raise ValueError(f"gate_channels must be even (tanh and sigmoid halves), got {self.gate_channels}")
        if not 2 <= self.mu_bits <= 16:
            raise ValueError(f"mu_bits must be between 2 and 16, got {self.mu_bits}")
        if self.n_mels < 0:
            raise ValueError(f"n_mels must be 0 (unconditional) or positive, got {self.n_mels}")
        if self.n_mels:
            if self.cond_channels < 1:
                raise ValueError(f"cond_channels must be at least 1, got {self.cond_channels}")
            if any(s < 1 for s in self.upsample_scales):
                raise ValueError(f"upsample_scales must be positive integers, got {self.upsample_scales}")
            if self.upsample_mode not in UPSAMPLE_MODES:
                raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {self.upsample_mode!r}")
            if self.mel_context < 0:
                raise ValueError(f"mel_context must be >= 0, got {self.mel_context}")
        if self.n_speakers < 0:
            raise ValueError(f"n_speakers must be >= 0, got {self.n_speakers}")
        if self.n_speakers and self.speaker_dim < 1:
            raise ValueError(f"speaker_dim must be at least 1 with n_speakers={self.n_speakers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_model_setting(self.spectral_projection, self.n_mels)
        check_sampling_temperature(self.sampling_temperature)
        if not 0 <= self.lpc_order <= MAX_LPC_ORDER:
            raise ValueError(f"lpc_order must be in 0..{MAX_LPC_ORDER} (0 = no linear prediction), got {self.lpc_order}")
        if self.lpc_order and not self.n_mels:
            raise ValueError(f"lpc_order={self.lpc_order} needs a mel (n_mels > 0): the prediction comes from it")

    @property
    def out_classes(self) -> int:
        return 1 << self.mu_bits

    @property
    def stacks(self) -> int:
        return math.ceil(self.layers / self.dilation_cycle)

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2 ** (i % self.dilation_cycle) for i in range(self.layers))

    @property
    def upsample_factor(self) -> int:
        return math.prod(self.upsample_scales)

    @property
    def receptive_field(self) -> int:
        """Previous samples that influence the next one: ``(kernel_size - 1) * sum(dilations) + 1``."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1

    def scales_for(self, profile: FeatureProfile) -> tuple[int, ...]:
        """The upsample scales used with ``profile`` (the configured ones, or automatic ones)."""
        return self.upsample_scales or auto_upsample_scales(profile.hop_length)

    def check_profile(self, profile: FeatureProfile) -> None:
        """Raise ValueError if this config cannot be used with ``profile``."""
        if not self.n_mels:
            return
        if self.upsample_scales and self.upsample_factor != profile.hop_length:
            raise ValueError(
                f"upsample_scales {self.upsample_scales} multiply to {self.upsample_factor}, but the feature "
                f"profile '{profile.name}' has hop_length {profile.hop_length}; choose scales whose product is the hop"
            )
        if self.n_mels != profile.n_mels:
            raise ValueError(
                f"config n_mels={self.n_mels} differs from the feature profile '{profile.name}' n_mels={profile.n_mels}"
            )


def auto_upsample_scales(hop: int, largest: int = 8) -> tuple[int, ...]:
    """Factor ``hop`` into few small upsample scales: prime factors, merging the two smallest while
    their product stays <= ``largest`` (256 -> (4, 4, 4, 4), 200 -> (5, 5, 8), 275 -> (5, 5, 11))."""
    if hop < 1:
        raise ValueError(f"hop_length must be >= 1, got {hop}")
    factors, n, p = [], hop, 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    factors.sort()
    while len(factors) > 1 and factors[0] * factors[1] <= largest:
        factors = sorted([factors[0] * factors[1], *factors[2:]])
    return tuple(factors) or (1,)


class _GatedBlock(nn.Module):
    """One residual block: causal dilated conv [B,R,T] -> [B,G,T], gate, fused 1x1 to residual + skip."""

    def __init__(self, cfg: WaveNetConfig, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.left_pad = (cfg.kernel_size - 1) * dilation
        self.dilated = nn.Conv1d(cfg.residual_channels, cfg.gate_channels, cfg.kernel_size, dilation=dilation)
        self.out = nn.Conv1d(cfg.gate_channels // 2, cfg.residual_channels + cfg.skip_channels, 1)


class _NoiseStream:
    """Gumbel noise ``[B, C]`` per sample, drawn from ``generator`` in blocks of NOISE_BLOCK samples.

    ``argmax(logits + temperature * gumbel)`` samples ``softmax(logits / temperature)``. A block is
    filled lazily in pieces of at most ``NOISE_PIECE_VALUES`` values (the generator yields the same
    sequence whatever the piece size), so a large folded batch never stalls one step for long.
    """

    def __init__(self, generator: torch.Generator, batch: int, classes: int, temperature: float, device) -> None:
        self.generator = generator
        self.shape = (NOISE_BLOCK, batch, classes)
        self.piece = max(1, NOISE_PIECE_VALUES // max(1, batch * classes))
        self.temperature = float(temperature)
        self.device = device
        self.tensor: torch.Tensor | None = None
        self.filled = 0
        self.start = -NOISE_BLOCK

    def _fill_to(self, rows: int) -> None:
        while self.filled < rows:
            part = self.tensor[self.filled : self.filled + self.piece]
            # gumbel = -log(E) with E = -log(U) ~ Exp(1): torch's uniform_ is ~5x faster than its
            # exponential_ on the CPU (27 ns per value measured here, a quarter of a small model's time)
            part.uniform_(generator=self.generator).log_().neg_().log_().neg_().mul_(self.temperature)
            self.filled += part.shape[0]

    def at(self, t: int) -> torch.Tensor:
        return self.rows(t, 1)[0]

    def rows(self, t: int, n: int) -> torch.Tensor:
        """Noise of samples ``t .. t+n-1`` as one ``[n, B, C]`` view; they must lie in one block."""
        if t % NOISE_BLOCK + n > NOISE_BLOCK:
            raise ValueError(f"samples {t}..{t + n - 1} cross a noise block boundary")
        if t - self.start >= NOISE_BLOCK or t < self.start:
            self.start = t - t % NOISE_BLOCK
            if self.tensor is None:  # refilled in place afterwards: no fresh memory per block
                self.tensor = torch.empty(self.shape, device=self.device)
            self.filled = 0
        i = t - self.start
        self._fill_to(i + n)
        return self.tensor[i : i + n]


@register_family
class WaveNet(WaveformModel):
    """A WaveNet over mu-law classes, optionally mel- and speaker-conditioned. See the module doc."""

    family = "wavenet"
    config_class = WaveNetConfig
    warm_start_fields = ("sampling_temperature", "spectral_projection")
    STREAM_OPTIONS = (
        "speaker", "plain", "folded", "fold_length", "fold_overlap", "fold_batch", "threads", "native",
        "on_distribution", "distribution_stride",
    )
    supports_distribution = True

    def __init__(self, config: WaveNetConfig, profile: FeatureProfile) -> None:
        super().__init__(config, profile)
        config.check_profile(profile)
        cfg = config
        layer_width = cfg.layers * cfg.gate_channels
        self.embed = nn.Embedding(cfg.out_classes, cfg.residual_channels)
        self.layers = nn.ModuleList(_GatedBlock(cfg, d) for d in cfg.dilations)
        self.upsampler: MelUpsampler | None = None
        self.cond_proj: nn.Conv1d | None = None
        if cfg.n_mels:
            self.upsampler = MelUpsampler(
                cfg.n_mels, cfg.cond_channels, cfg.scales_for(profile), cfg.upsample_mode, cfg.mel_context
            )
            self.cond_proj = nn.Conv1d(cfg.cond_channels, layer_width, 1)  # all layers at once
        self.speaker_embed: nn.Embedding | None = None
        self.speaker_proj: nn.Linear | None = None
        if cfg.n_speakers:
            self.speaker_embed = nn.Embedding(cfg.n_speakers, cfg.speaker_dim)
            self.speaker_proj = nn.Linear(cfg.speaker_dim, layer_width, bias=False)
        self.post1 = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.post2 = nn.Conv1d(cfg.skip_channels, cfg.out_classes, 1)
        self.silence_class = int(mulaw_encode(torch.zeros(()), cfg.mu_bits))
        self._decode_tables: dict[torch.device, torch.Tensor] = {}

    # -- the interface -----------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def conditioning_radius(self) -> int:
        """Mel frames either side of frame ``n // hop`` that influence sample ``n`` (0 when unconditional)."""
        return 0 if self.upsampler is None else self.upsampler.radius_frames

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Float audio in [-1, 1] -> mu-law classes (int64, same shape)."""
        return mulaw_encode(audio, self.config.mu_bits)

    def decode(self, classes: torch.Tensor) -> torch.Tensor:
        """Mu-law classes -> float audio in [-1, 1] (same shape). Integer classes are looked up in a table of
        ``mulaw_decode`` over every class (the same values; the float64 formula cost ~3 µs per sample on a
        folded generation's joined segments)."""
        if classes.dtype != torch.int64:
            return mulaw_decode(classes, self.config.mu_bits)
        table = self._decode_tables.get(classes.device)
        if table is None:
            codes = torch.arange(self.config.out_classes, device=classes.device)
            table = self._decode_tables[classes.device] = mulaw_decode(codes, self.config.mu_bits)
        return table[classes.clamp(0, self.config.out_classes - 1)]

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel ``[B, n_mels, F]`` -> conditioning ``[B, cond_channels, F * hop]``."""
        if self.upsampler is None:
            raise ValueError("this WaveNet is unconditional (n_mels=0): it takes no mel")
        return self.upsampler(mel)

    def forward(
        self, inputs: torch.Tensor, cond: torch.Tensor | None = None, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits.

        inputs: int64 ``[B, T]`` mu-law classes (the previous samples, see the module doc).
        cond: ``[B, cond_channels, T]`` from ``upsample`` (required iff the model is mel-conditioned).
        speaker: int64 ``[B]`` speaker ids (required iff ``n_speakers > 0``).
        Returns logits ``[B, out_classes, T]``; position ``t`` depends on ``inputs[:, :t+1]`` only.
        """
        cfg = self.config
        self._check_inputs(inputs, cond, speaker)
        h = self.embed(inputs).transpose(1, 2)  # [B, R, T]
        g = cfg.gate_channels
        speaker_bias = None
        if self.speaker_proj is not None:
            speaker_bias = self.speaker_proj(self.speaker_embed(speaker)).unsqueeze(-1)  # [B, L*G, 1]
        skips = None
        res_scale = math.sqrt(0.5)
        for i, layer in enumerate(self.layers):
            x = F.dropout(h, cfg.dropout, self.training) if cfg.dropout else h
            a = layer.dilated(F.pad(x, (layer.left_pad, 0)))
            if cond is not None:
                a = a + F.conv1d(cond, self.cond_proj.weight[i * g : (i + 1) * g], self.cond_proj.bias[i * g : (i + 1) * g])
            if speaker_bias is not None:
                a = a + speaker_bias[:, i * g : (i + 1) * g]
            z = torch.tanh(a[:, : g // 2]) * torch.sigmoid(a[:, g // 2 :])
            o = layer.out(z)
            h = (h + o[:, : cfg.residual_channels]) * res_scale
            s = o[:, cfg.residual_channels :]
            skips = s if skips is None else skips + s
        y = F.relu(skips * math.sqrt(1.0 / cfg.layers))
        return self.post2(F.relu(self.post1(y)))

    def training_loss(
        self, audio: torch.Tensor, mel: torch.Tensor | None, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cross-entropy (nats) of every sample's mu-law class given the previous ones (with
        ``lpc_order``: of the excitation's classes, the excitation computed from the audio and the mel).

        audio: float32 ``[B, T]`` in [-1, 1]; mel: ``[B, n_mels, T // hop]`` or None; speaker: int64
        ``[B]`` for multi-speaker models (required there).
        """
        if audio.dim() != 2:
            raise ValueError(f"audio must be [batch, samples], got shape {tuple(audio.shape)}")
        if self.config.lpc_order:
            if mel is None:
                raise ValueError("this WaveNet models the LPC excitation: training_loss needs mel frames")
            audio = lpc.excitation(audio, self.sample_lpc(mel, audio.shape[1]))
        classes = self.encode(audio)
        inputs = torch.cat([torch.full_like(classes[:, :1], self.silence_class), classes[:, :-1]], dim=1)
        cond = None
        if self.upsampler is not None:
            if mel is None:
                raise ValueError("this WaveNet is mel-conditioned: training_loss needs mel frames")
            hop = self.profile.hop_length
            if mel.shape[-1] * hop < audio.shape[1]:
                raise ValueError(
                    f"mel has {mel.shape[-1]} frames = {mel.shape[-1] * hop} samples, fewer than the audio's {audio.shape[1]}"
                )
            cond = self.upsample(mel)[..., : audio.shape[1]]
        logits = self(inputs, cond, speaker)
        return F.cross_entropy(logits, classes)

    def frame_lpc(self, mel: torch.Tensor) -> torch.Tensor:
        """Predictor coefficients per mel frame: [B, n_mels, F] -> [B, F, lpc_order] (float64)."""
        with torch.autocast(mel.device.type, enabled=False):
            return lpc.lpc_from_mel(mel.double(), self.profile, self.config.lpc_order)

    def sample_lpc(self, mel: torch.Tensor, samples: int) -> torch.Tensor:
        """Predictor coefficients per sample: [B, n_mels, F] -> [B, samples, lpc_order] (float32; frame
        ``t // hop`` holds sample ``t``)."""
        return lpc.sample_coefficients(mel, self.profile, self.config.lpc_order, samples)

    def _check_inputs(self, inputs: torch.Tensor, cond: torch.Tensor | None, speaker: torch.Tensor | None) -> None:
        if inputs.dim() != 2:
            raise ValueError(f"inputs must be [batch, samples] of classes, got shape {tuple(inputs.shape)}")
        if (cond is None) != (self.upsampler is None):
            need = "needs" if self.upsampler is not None else "takes no"
            raise ValueError(f"this WaveNet {need} mel conditioning (n_mels={self.config.n_mels})")
        if cond is not None and (cond.shape[0] != inputs.shape[0] or cond.shape[-1] != inputs.shape[-1]):
            raise ValueError(f"cond shape {tuple(cond.shape)} does not match inputs {tuple(inputs.shape)}")
        if (speaker is None) != (self.speaker_embed is None):
            need = "needs" if self.speaker_embed is not None else "takes no"
            raise ValueError(f"this WaveNet {need} speaker ids (n_speakers={self.config.n_speakers})")
        if speaker is not None and not bool(((speaker >= 0) & (speaker < self.config.n_speakers)).all()):
            raise ValueError(f"speaker ids must be in [0, {self.config.n_speakers}), got {speaker.tolist()}")

    # -- conditioning for the incremental path --------------------------------------------------
    def cond_projection(self) -> Affine | None:
        """The conditioning projection of ``layer_biases`` as one packed ``Affine`` (cond rows [n, Cc] ->
        [n, L*G], conv biases included), or None when unconditional. A snapshot of the weights: make it
        once per generation (packing costs a few ms per call at reference size), not per chunk."""
        if self.cond_proj is None:
            return None
        with torch.no_grad():
            conv_bias = torch.cat([layer.dilated.bias for layer in self.layers])
            return Affine(self.cond_proj.weight[:, :, 0].t(), self.cond_proj.bias + conv_bias)

    def layer_biases(
        self,
        cond: torch.Tensor | None,
        speaker: torch.Tensor | None,
        batch: int,
        length: int,
        projection: Affine | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every layer's gate bias per sample: ``[length, layers, B, gate_channels]`` (contiguous).

        It is the dilated conv bias + the projected conditioning ``cond [B, cond_channels, length]``
        (one matmul for all layers) + the projected speaker embedding (``speaker [B]``).
        ``projection``: ``cond_projection()`` made once by the caller (generation); without it one is
        packed per call (or ``addmm`` used when gradients are on). ``out`` (batch 1, no gradients): a
        contiguous buffer of at least ``length * layers * gate_channels`` floats to write into (the
        result is a view of it), so that long generations allocate nothing large per chunk.
        """
        cfg = self.config
        if out is not None and batch == 1 and not torch.is_grad_enabled():
            flat = out.view(-1)[: length * cfg.layers * cfg.gate_channels].view(length, -1)
            if cond is not None:
                proj = projection or self.cond_projection()
                torch.addmm(proj.bias, cond[0].t(), proj.weight, out=flat)
            else:
                flat.copy_(torch.cat([layer.dilated.bias for layer in self.layers]).expand_as(flat))
            if speaker is not None:
                flat += self.speaker_proj(self.speaker_embed(speaker))
            return flat.view(length, cfg.layers, 1, cfg.gate_channels)
        conv_bias = torch.cat([layer.dilated.bias for layer in self.layers])  # [L*G]
        if cond is not None:
            w = self.cond_proj.weight[:, :, 0]  # [L*G, Cc]
            rows = cond.permute(2, 0, 1).reshape(length * batch, -1)  # [n*B, Cc]
            if torch.is_grad_enabled():
                bias = torch.addmm(self.cond_proj.bias + conv_bias, rows, w.t())
            else:  # generation: oneDNN on the CPU (MKL's generic path is 3-4x slower here), same values
                bias = (projection or self.cond_projection())(rows)
            bias = bias.view(length, batch, -1)  # [n, B, L*G]
        else:
            bias = conv_bias.expand(length, batch, -1)
        if speaker is not None:
            bias = bias + self.speaker_proj(self.speaker_embed(speaker))  # [B, L*G] broadcast
        if batch == 1:  # [n, 1, L*G] is already layer-major: no copy
            return bias.reshape(length, cfg.layers, 1, cfg.gate_channels).contiguous()
        return bias.reshape(length, batch, cfg.layers, cfg.gate_channels).transpose(1, 2).contiguous()

    def incremental_logits(
        self, inputs: torch.Tensor, cond: torch.Tensor | None = None, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, C, T]`` computed one sample at a time by the fast path (tests)."""
        self._check_inputs(inputs, cond, speaker)
        batch, length = inputs.shape
        with torch.inference_mode():
            stepper = IncrementalWaveNet(self, batch)
            biases = self.layer_biases(cond, speaker, batch, length) * stepper.gate_scale
            out = torch.empty(batch, self.config.out_classes, length, device=inputs.device)
            for t in range(length):
                out[:, :, t] = stepper.step_scaled(inputs[:, t].contiguous(), biases[t].unbind(0))
        return out

    # -- generation --------------------------------------------------------------------------
    def _speaker_tensor(self, request: GenerateRequest, batch: int, device: torch.device) -> torch.Tensor | None:
        speaker = request.options.get("speaker")
        if self.speaker_embed is None:
            if speaker not in (None, 0):
                raise ValueError(f"this WaveNet has no speakers, but options['speaker']={speaker!r}")
            return None
        speaker = 0 if speaker is None else int(speaker)
        if not 0 <= speaker < self.config.n_speakers:
            raise ValueError(f"speaker {speaker} out of range: this model has {self.config.n_speakers} speakers")
        return torch.full((batch,), speaker, dtype=torch.long, device=device)

    def _cond_span(self, mel: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
        return None if mel is None or self.upsampler is None else self.upsampler.span(mel, start, stop)

    def _generate(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        blocks = self._generate_classes(request, mel, num_samples, generator)
        # with lpc_order every path draws the excitation; the mel's all-pole filter and de-emphasis make it audio
        yield from lpc.synthesised(blocks, None if mel is None else mel[0], self.profile, self.config.lpc_order)

    def _generate_classes(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """The decoded classes drawn, in blocks: the audio, or the excitation of an LPC model."""
        if request.options.get("plain"):
            yield from self._generate_plain(request, mel, num_samples, generator)
            return
        if request.options.get("folded"):
            if not math.isfinite(request.temperature) or request.temperature < 0:
                raise ValueError(f"temperature must be a finite number >= 0, got {request.temperature}")
            yield from generate_folded(
                self, request, mel, num_samples, generator, _NoiseStream, COND_CHUNK_VALUES, CANCEL_CHECK_EVERY
            )
            return
        temperature = float(request.temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        yield from self._generate_single(request, mel, num_samples, generator, temperature)

    def _single_stepper(self, request: GenerateRequest):
        """The batch-1 stepper: the native loop (``wavenet_native``) on CPU float32 unless
        ``options['native']`` is False or it is unavailable, else the torch ``IncrementalWaveNet``."""
        weight = self.embed.weight
        stop = lambda: request.cancelled  # noqa: E731
        if request.options.get("native", True) and weight.device.type == "cpu" and weight.dtype == torch.float32:
            from studio.engine.models.wavenet_native import NativeWaveNet, native_library

            lib = native_library()
            if lib is not None:
                return NativeWaveNet(self, lib, should_stop=stop)
        return IncrementalWaveNet(self, 1, should_stop=stop)

    def _generate_single(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator,
        temperature: float,
    ) -> Iterator[torch.Tensor]:
        device = self.embed.weight.device
        batch = 1
        block = max(1, int(request.block_size))
        cfg = self.config
        chunk = max(64, min(block, SINGLE_CHUNK_STEPS, COND_CHUNK_VALUES // (cfg.layers * cfg.gate_channels * batch)))
        with torch.inference_mode(), intra_op_threads(request.options.get("threads", 1)):
            try:
                stepper = self._single_stepper(request)
            except StepperCancelled:
                return
            native = not isinstance(stepper, IncrementalWaveNet)
            speaker = self._speaker_tensor(request, batch, device)
            noise = _NoiseStream(generator, batch, cfg.out_classes, temperature, device)
            # a rolling buffer over one yielded block: row 0 holds the class before the block's first step,
            # row k + 1 the class drawn at step done + k (bounded by block_size, whatever num_samples is)
            classes = torch.empty(min(block, num_samples) + 1, batch, dtype=torch.long, device=device)
            classes[0] = self.silence_class
            flat = classes.view(-1)
            scratch = torch.empty(batch, cfg.out_classes, device=device)
            bias_buffer = torch.empty(chunk * cfg.layers * cfg.gate_channels, device=device) if native else None
            tap = DistributionTap.from_request(request)
            # the native loop copies a run's logits here only when tapped (a run never crosses a noise block)
            run_logits = torch.empty(NOISE_BLOCK, cfg.out_classes) if native and tap is not None else None
        done, run = 0, 16  # run: steps per native call, adapted to NATIVE_RUN_SECONDS
        while done < num_samples:
            stop = min(num_samples, done + block)
            t = done
            cancelled = request.cancelled
            with torch.inference_mode(), intra_op_threads(request.options.get("threads", 1)):
                while t < stop and not cancelled:
                    n = min(chunk, stop - t)
                    if native:  # into a reused buffer: nothing large allocated per chunk
                        cond = self._cond_span(mel, t, t + n)
                        biases = self.layer_biases(cond, speaker, batch, n, stepper.projection, out=bias_buffer)
                        biases.mul_(stepper.gate_scale)  # [n, L, 1, G]
                    else:
                        biases = self.layer_biases(self._cond_span(mel, t, t + n), speaker, batch, n, stepper.projection)
                        biases = biases * stepper.gate_scale  # [n, L, 1, G]
                    if native:
                        i = 0
                        while i < n and not cancelled:
                            m = min(run, n - i, NOISE_BLOCK - t % NOISE_BLOCK)
                            rows = noise.rows(t, m) if temperature > 0 else None
                            began = time.perf_counter()
                            if run_logits is None:
                                stepper.run(flat, biases[i : i + m], rows, t - done, m)
                            else:  # same samples, plus the run's logits [m, C]
                                stepper._call(flat, biases[i : i + m], rows, t - done, m, run_logits, forced=False)
                                tap.record_span(t, run_logits[:m])
                            took = time.perf_counter() - began
                            if took < NATIVE_RUN_SECONDS[0] and m == run:
                                run = min(512, run * 2)
                            elif took > NATIVE_RUN_SECONDS[1]:
                                run = max(1, run // 2)
                            i += m
                            t += m
                            cancelled = request.cancelled
                        continue
                    biases = biases.unbind(0)
                    for i in range(n):
                        logits = stepper.step_scaled(classes[t - done], biases[i].unbind(0))
                        if tap is not None:
                            tap.record(t, logits[0])
                        if temperature > 0:
                            torch.add(logits, noise.at(t), out=scratch)
                            torch.argmax(scratch, dim=1, out=classes[t - done + 1])
                        else:
                            torch.argmax(logits, dim=1, out=classes[t - done + 1])
                        t += 1
                        if t % CANCEL_CHECK_EVERY == 0 and request.cancelled:
                            cancelled = True
                            break
                audio = self.decode(classes[1 : t - done + 1, 0])
                classes[0] = classes[t - done]  # the last class feeds the next block's first step
            done = t
            if tap is not None:
                tap.flush(done)
            if len(audio):
                yield audio
            if cancelled or request.cancelled:
                return

    def _generate_plain(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """The slow reference: the full network over the last ``receptive_field`` inputs, per sample."""
        device = self.embed.weight.device
        temperature = float(request.temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        block = max(1, int(request.block_size))
        rf = self.receptive_field
        with torch.inference_mode():
            speaker = self._speaker_tensor(request, 1, device)
            cond = None if mel is None or self.upsampler is None else self.upsampler(mel)[..., :num_samples]
            noise = _NoiseStream(generator, 1, self.config.out_classes, temperature, device)
            classes = torch.empty(1, num_samples + 1, dtype=torch.long, device=device)
            classes[0, 0] = self.silence_class
            tap = DistributionTap.from_request(request)
        done = 0
        while done < num_samples:
            stop = min(num_samples, done + block)
            with torch.inference_mode(), intra_op_threads(request.options.get("threads")):
                for t in range(done, stop):
                    lo = max(0, t + 1 - rf)
                    window_cond = None if cond is None else cond[..., lo : t + 1]
                    logits = self(classes[:, lo : t + 1], window_cond, speaker)[:, :, -1]
                    if tap is not None:
                        tap.record(t, logits[0])
                    if temperature > 0:
                        logits = logits + noise.at(t)
                    classes[:, t + 1] = torch.argmax(logits, dim=1)
                    if request.cancelled:
                        stop = t + 1
                        break
                audio = self.decode(classes[0, done + 1 : stop + 1])
            done = stop
            if tap is not None:
                tap.flush(done)
            yield audio
            if request.cancelled:
                return

    def generate_plain(self, request: GenerateRequest) -> np.ndarray:
        """Like ``generate`` but on the slow path (recomputes the receptive field per sample)."""
        return self.generate(dataclasses.replace(request, options={**request.options, "plain": True}))

    def describe(self) -> dict[str, Any]:
        """A few derived numbers for the model card and the CLI ``info`` command."""
        cfg = self.config
        return {
            "receptive_field_samples": self.receptive_field,
            "receptive_field_ms": 1000.0 * self.receptive_field / self.sample_rate,
            "dilations": list(cfg.dilations),
            "out_classes": cfg.out_classes,
            "conditioning_radius_frames": self.conditioning_radius,
            "lpc_order": cfg.lpc_order,
        }
