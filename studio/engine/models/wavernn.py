"""WaveRNN: a recurrent vocoder that makes one sample per step (fatchord layout, two output modes).

Network (``mode="mulaw"``, the fatchord structure): the mel passes a residual network (-> auxiliary
features, split in four) and an upsampling network (-> mel at the sample rate). Per sample ``t``:

    x  = I([s_{t-1}, mel_t, aux0_t])
    x  = GRU1(x) + x
    x  = GRU2([x, aux1_t]) + x
    y  = relu(FC1([x, aux2_t])); y = relu(FC2([y, aux3_t])); logits = FC3(y)  ->  2**bits mu-law classes

``mode="dual"`` is the original paper's dual softmax for 16-bit audio: each sample splits into an
8-bit coarse and an 8-bit fine half. One GRU step with input ``[c_{t-1}, f_{t-1}, c_t, mel_t, aux0_t]``
holds a coarse and a fine half of the state; a mask keeps ``c_t`` out of the coarse half's gates, so
the coarse half (and its softmax, conditioned on the previous coarse+fine values) is computed first,
``c_t`` is drawn, and then the fine half (additionally conditioned on ``c_t``) gives the fine softmax.
Heads: coarse FC1 on [h_coarse, aux1], fine FC1 on [h_fine, aux2], each FC2 on [., aux3], FC3 -> 256.

The network input for a previous sample is its class mapped linearly to [-1, 1] (the mu-law
companded value; for dual, coarse and fine scaled separately), the first step sees the class of 0.0.

``lpc_order > 0`` (mu-law only) is the LPCNet split of the work: linear prediction computed from the mel
(``studio.engine.audio.lpc``, order-16 per frame, the same function at training and generation time)
supplies the spectral envelope, the network models the excitation. The signal ``s`` is the audio
pre-emphasised by 0.85; per sample the prediction ``p_t = sum_k c_k s_{t-k}`` (the frame's predictor
coefficients, handed in as the last ``lpc_order`` columns of the per-sample conditioning) and the input
``I([compand(s_{t-1}), compand(p_t), e_{t-1}, mel_t, aux0_t])``; the softmax draws the mu-law class of the
excitation ``e_t = s_t - p_t``, generation rebuilds ``s_t = p_t + e_t`` and de-emphasises. Training is
teacher forced on the real signal (target: the class of ``s_t - p_t`` with ``p_t`` from the real past).
Such a model steps with ``wavernn_step.LpcStepper`` (torch) or its C counterpart in ``wavernn_native``.

Generation (``stream``): the fast path (``wavernn_step``) precomputes the conditioning's share of every
layer and steps in C (``wavernn_native``, CPU float32, when a compiler is found; ``options={"native":
False}`` or ``STUDIO_NO_NATIVE=1`` keeps the torch steps; LPC models too);
``options={"folded": True}`` generates
overlapping segments as one batch (``wavernn_fold``);
``generate_plain`` is the eager one-sample-at-a-time baseline on the nn modules themselves. Tests
prove that they compute the same function. Threads: generation runs on the iterating thread; only
``request.cancel`` is touched from elsewhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from studio.engine.audio.features import FeatureProfile
from studio.engine.audio.lpc import MAX_ORDER, deemphasise, lpc_from_mel, predict, preemphasise
from studio.engine.audio.mulaw import mulaw_decode, mulaw_encode
from studio.engine.audio.pitch import SOURCE_FEATURES, SourceTrack, source_features, wrap
from studio.engine.audio.projection import check_model_setting
from studio.engine.models import wavernn_fold as fold
from studio.engine.models.base import (
    GenerateRequest,
    WaveformModel,
    check_sampling_temperature,
    register_family,
)
from studio.engine.models.distribution import DistributionTap
from studio.engine.models.fast_linear import intra_op_threads
from studio.engine.models.folded_stream import stream_joined
from studio.engine.models.wavernn_layers import UpsampleNetwork
from studio.engine.models.wavernn_step import DualStepper, LpcStepper, MulawStepper

log = logging.getLogger(__name__)

MODES = ("mulaw", "dual")
DUAL_BITS = 16
MAX_LPC_ORDER = MAX_ORDER
LPC_INPUTS = 3
"""Per-step inputs of an LPC model: the previous (pre-emphasised) sample, this step's prediction (both
mu-law companded, not quantised) and the previous excitation class's input value."""
DEFAULT_FOLD_FRAMES = 40
"""Longest default folded segment in hops (fatchord's 11000 samples at hop 275)."""
MIN_FOLD_FRAMES = 8
"""Shortest default folded segment in hops (2200 samples at hop 275): at most one seam per 0.1 s."""
DEFAULT_FOLD_BATCH = 16
"""Default number of folds to aim for when ``fold_length`` is not given (see ``default_fold_length``)."""
CUDA_FOLD_BATCH = 256
"""The same on a GPU, where a step of 256 folds costs about what one fold does (the first H100 run was
launch-bound: 0.47 ms per step, 2.1 kHz single, 3.0 kHz with 16 folds of a 0.25 s input; docs/perf.md
phase 6). Folds stay at least ``MIN_FOLD_FRAMES`` long, so 10 s at hop 275 makes ~100 of them:
predicted ~170 kHz at reference size."""


def default_fold_batch(device_type: str) -> int:
    """Folds to aim for when the request names neither ``fold_length`` nor ``fold_batch``."""
    return CUDA_FOLD_BATCH if device_type == "cuda" else DEFAULT_FOLD_BATCH


DEFAULT_OVERLAP_FRAMES = 2
"""Default overlap between folded segments in hops (550 samples at hop 275)."""
FOLDED_FIRST_BLOCK = 128
"""Samples of the first block of a folded generation (at most ``block_size``): every segment steps in
lockstep, so each first-block sample costs a whole batch step; later blocks are ``block_size``."""


def default_fold_length(total: int, overlap: int, hop: int, batch: int = DEFAULT_FOLD_BATCH) -> int:
    """Folded segment length (samples) for ``total`` samples when the request names none.

    A folded step costs about the same for 1 or several folds up to the point where the products stop
    being bound by reading the weights (measured at reference size, one thread, oneDNN: 0.26 / 0.39 /
    0.94 ms per step for 1 / 4 / 16 folds), so short audio is cut into about ``batch`` folds rather
    than fatchord's fixed 11000 samples: 2 s at hop 275 makes 16 folds of 2200 instead of 4 of 11000.
    The length stays within ``[MIN_FOLD_FRAMES, DEFAULT_FOLD_FRAMES]`` hops, so long audio keeps
    fatchord's segments (and more folds).
    """
    want = -(-max(1, total - overlap) // max(1, batch)) - overlap
    return int(min(DEFAULT_FOLD_FRAMES * hop, max(MIN_FOLD_FRAMES * hop, want)))


@dataclass(frozen=True)
class WaveRNNConfig:
    """WaveRNN hyper-parameters.

    mode: "mulaw" (one softmax over ``2**bits`` mu-law classes) or "dual" (16-bit coarse/fine dual
        softmax; ``bits`` must be 16).
    bits: mu-law bits (9 or 10 are typical; 2..16 accepted), or 16 in dual mode.
    rnn_dims: GRU width (512 in the reference; in dual mode the coarse+fine total, so even).
    fc_dims: width of the FC layers (of each head in dual mode).
    n_mels: mel bands of the conditioning (must match the feature profile); 0 = unconditional.
    upsample_scales: per-stage stretch factors; their product must equal the profile's hop_length
        (e.g. (5, 5, 11) for hop 275 -- the default, the "wavernn" profile -- or (4, 4, 16) for hop 256;
        ``suggest_upsample_scales(hop)`` gives one).
    res_blocks, compute_dims, res_out_dims: the mel residual network (res_out_dims splits into four
        auxiliary feature groups, so it must be divisible by 4).
    pad: mel context frames on each side seen by the residual network's first convolution.
    lpc_order: 0 (the plain WaveRNN) or the order of the linear prediction computed from the mel
        (``studio.engine.audio.lpc``; 16 is LPCNet's): the network then models the excitation
        ``e_t = s_t - p_t`` of the pre-emphasised signal ``s`` in ``2**bits`` mu-law classes, given
        ``[s_{t-1}, p_t, e_{t-1}]``, and generation rebuilds ``s_t = p_t + e_t`` (mode "mulaw" only).
    sampling_temperature: the temperature a request's 1.0 stands for (a calibration stored with the
        model, ``base.check_sampling_temperature``; 1.0 = the trained distribution).
    pitch_inputs: LPC models only: the network also sees a periodic source made from the mel's pitch
        (``studio.engine.audio.pitch``: F0 and voicing read back from the mel by DSP, integrated to a
        phase), as four more per-sample conditioning inputs ``[v sin, v cos, v, v pulse]`` after the
        upsampled mel. In training (and held-out) losses the phase of each segment is shifted so that
        its strongest voiced excitation sample falls on phase 0; generation starts at phase 0, so the
        network's pulses follow the tracked pitch instead of a count it has to keep itself.
    noise_injection: training only, LPC models only: the largest scale, in mu-law classes, of the
        Laplacian noise added to the teacher-forced excitation (LPCNet's noise injection). Each segment
        draws its scale uniformly in [0, noise_injection]; the past the network sees is the signal
        rebuilt from the noisy excitation, and the target is the clean next sample's excitation
        against the prediction from that noisy past, so the network learns to steer back from the
        errors its own draws make when it generates. 0 = plain teacher forcing. Held-out losses are
        always computed without it.
    spectral_projection: None (the default: the output as the network and filter make it) or the
        passes, after the first, that bring the output's mel to the conditioning mel
        (``studio.engine.audio.projection``; 0 = one pass): a generation setting stored
        with the model, like ``sampling_temperature``; a request's ``options["spectral_projection"]``
        overrides it. Needs a mel.
    """

    mode: str = "mulaw"
    bits: int = 9
    rnn_dims: int = 512
    fc_dims: int = 512
    n_mels: int = 80
    upsample_scales: tuple[int, ...] = (5, 5, 11)
    res_blocks: int = 10
    compute_dims: int = 128
    res_out_dims: int = 128
    pad: int = 2
    lpc_order: int = 0
    sampling_temperature: float = 1.0
    noise_injection: float = 0.0
    pitch_inputs: bool = False
    spectral_projection: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "upsample_scales", tuple(int(s) for s in self.upsample_scales))
        if self.mode not in MODES:
            raise ValueError(f"WaveRNN mode must be one of {MODES}, got mode={self.mode!r}")
        if self.mode == "dual" and self.bits != DUAL_BITS:
            raise ValueError(f"dual mode is 16-bit (8-bit coarse + 8-bit fine): set bits=16, got bits={self.bits}")
        if self.mode == "mulaw" and not 2 <= self.bits <= 16:
            raise ValueError(f"mu-law bits must be in 2..16 (9 or 10 are typical), got bits={self.bits}")
        if self.rnn_dims < 1 or self.fc_dims < 1:
            raise ValueError(f"rnn_dims and fc_dims must be positive, got {self.rnn_dims} and {self.fc_dims}")
        if self.mode == "dual" and self.rnn_dims % 2:
            raise ValueError(f"dual mode splits the GRU state in two halves: rnn_dims must be even, got {self.rnn_dims}")
        if self.n_mels < 0:
            raise ValueError(f"n_mels must be >= 0 (0 = unconditional), got n_mels={self.n_mels}")
        check_model_setting(self.spectral_projection, self.n_mels)
        check_sampling_temperature(self.sampling_temperature)
        if not 0.0 <= self.noise_injection <= 2 ** (self.bits - 1):
            raise ValueError(
                f"noise_injection is a noise scale in mu-law classes, 0..{2 ** (self.bits - 1)}, got {self.noise_injection}"
            )
        object.__setattr__(self, "pitch_inputs", bool(self.pitch_inputs))
        if self.pitch_inputs and not self.lpc_order:
            raise ValueError("pitch_inputs needs lpc_order > 0: the source's phase is aligned to the excitation's pulses")
        if self.noise_injection and not self.lpc_order:
            raise ValueError("noise_injection needs lpc_order > 0: it perturbs the linear prediction's past")
        if not 0 <= self.lpc_order <= MAX_LPC_ORDER:
            raise ValueError(f"lpc_order must be in 0..{MAX_LPC_ORDER} (0 = no linear prediction), got {self.lpc_order}")
        if self.lpc_order and (self.mode != "mulaw" or not self.n_mels):
            raise ValueError(
                f"lpc_order={self.lpc_order} needs mode='mulaw' and a mel (n_mels > 0): the prediction comes "
                f"from the mel; got mode={self.mode!r}, n_mels={self.n_mels}"
            )
        if self.n_mels:
            if not self.upsample_scales or any(s < 1 for s in self.upsample_scales):
                raise ValueError(f"upsample_scales must be positive integers, got {self.upsample_scales}")
            if self.res_out_dims < 4 or self.res_out_dims % 4:
                raise ValueError(
                    f"res_out_dims must be a positive multiple of 4 (four aux groups), got {self.res_out_dims}"
                )
            if self.compute_dims < 1 or self.res_blocks < 0 or self.pad < 0:
                raise ValueError(
                    f"need compute_dims >= 1, res_blocks >= 0, pad >= 0; got compute_dims={self.compute_dims}, "
                    f"res_blocks={self.res_blocks}, pad={self.pad}"
                )

    @property
    def hop_length(self) -> int:
        """Product of ``upsample_scales``: samples per mel frame."""
        return math.prod(self.upsample_scales)

    @property
    def classes(self) -> int:
        """Softmax size per head: ``2**bits`` (mulaw) or 256 (each dual head)."""
        return 256 if self.mode == "dual" else 2**self.bits


def suggest_upsample_scales(hop_length: int, stages: int = 3) -> tuple[int, ...]:
    """Split ``hop_length`` into ``stages`` factors as even as possible, smallest first: 275 -> (5, 5, 11).

    Fewer stages come back when the hop has fewer prime factors (a prime hop gives one stage).
    """
    if hop_length < 1:
        raise ValueError(f"hop_length must be >= 1, got {hop_length}")
    primes, n, p = [], hop_length, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    scales = [1] * max(1, min(stages, len(primes)))
    for prime in sorted(primes, reverse=True):
        scales[scales.index(min(scales))] *= prime
    return tuple(sorted(scales))


def compand(x: Tensor, bits: int) -> Tensor:
    """The mu-law compander without quantisation: ``sign(x) ln(1 + mu |x|) / ln(1 + mu)``, mu = 2**bits - 1
    (an LPC model's continuous inputs: the previous sample and the prediction)."""
    mu = float(2**bits - 1)
    return torch.copysign(torch.log1p(x.abs() * mu), x) * (1.0 / math.log1p(mu))


def sample_classes(logits: Tensor, u: Tensor, temperature: float) -> Tensor:
    """Draw one class per row of logits [B, K] by inverse CDF with uniforms u [B]; temperature 0 = argmax."""
    if temperature <= 0.0:
        return logits.argmax(-1)
    cdf = torch.softmax(logits * (1.0 / temperature), dim=-1).cumsum_(-1)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


@register_family
class WaveRNN(WaveformModel):
    """WaveRNN vocoder (see module doc). ``config``: WaveRNNConfig; ``profile``: the mel feature profile."""

    family = "wavernn"
    config_class = WaveRNNConfig
    supports_distribution = True

    def __init__(self, config: WaveRNNConfig, profile: FeatureProfile) -> None:
        super().__init__(config, profile)
        if config.n_mels:
            if config.n_mels != profile.n_mels:
                raise ValueError(
                    f"config n_mels={config.n_mels} does not match the feature profile "
                    f"'{profile.name}' n_mels={profile.n_mels}"
                )
            if config.hop_length != profile.hop_length:
                raise ValueError(
                    f"upsample_scales {config.upsample_scales} multiply to {config.hop_length}, but the feature "
                    f"profile '{profile.name}' has hop_length={profile.hop_length}"
                )
        self.n_mels = config.n_mels
        self.mel_dims = config.n_mels + (SOURCE_FEATURES if config.pitch_inputs else 0)
        """Width of the conditioning's first group: the upsampled mel and, with ``pitch_inputs``, the source."""
        self.aux_dims = config.res_out_dims // 4 if config.n_mels else 0
        a, r, f = self.aux_dims, config.rnn_dims, config.fc_dims
        if config.n_mels:
            self.upsample = UpsampleNetwork(
                config.upsample_scales, config.n_mels, config.res_blocks, config.compute_dims,
                config.res_out_dims, config.pad,
            )
        self.lpc_order = config.lpc_order
        if config.mode == "mulaw":
            self.I = nn.Linear(self.input_features + self.mel_dims + a, r)
            self.rnn1 = nn.GRU(r, r, batch_first=True)
            self.rnn2 = nn.GRU(r + a, r, batch_first=True)
            self.fc1 = nn.Linear(r + a, f)
            self.fc2 = nn.Linear(f + a, f)
            self.fc3 = nn.Linear(f, config.classes)
        else:
            half = r // 2
            self.rnn = nn.GRU(3 + self.n_mels + a, r, batch_first=True)
            mask = torch.ones(3 * r, 3 + self.n_mels + a)
            for gate in range(3):  # rows r, z, n; the coarse half of each is blind to c_t (column 2)
                mask[gate * r : gate * r + half, 2] = 0.0
            self.register_buffer("ih_mask", mask, persistent=False)
            for head in ("coarse", "fine"):
                setattr(self, f"{head}_fc1", nn.Linear(half + a, f))
                setattr(self, f"{head}_fc2", nn.Linear(f + a, f))
                setattr(self, f"{head}_fc3", nn.Linear(f, 256))
        kind = f"{config.bits}-bit mu-law softmax" if config.mode == "mulaw" else "16-bit dual softmax"
        if config.lpc_order:
            kind = f"order-{config.lpc_order} LPC from the mel, {config.bits}-bit mu-law excitation"
            if config.pitch_inputs:
                kind += ", pitch-locked source input"
        self.extra_card["description"] = f"WaveRNN ({kind}, {r}-unit GRU)"

    # -- interface ------------------------------------------------------------------------------
    warm_start_fields = ("noise_injection", "pitch_inputs", "sampling_temperature", "spectral_projection")

    def _state_for(self, config: WaveRNNConfig) -> dict[str, torch.Tensor]:
        """See ``WaveformModel._state_for``. ``pitch_inputs`` False -> True inserts the source's input
        columns into ``I`` with zero weights, so the copy's outputs are this model's."""
        if self.config.pitch_inputs and not config.pitch_inputs:
            raise ValueError("a warm start cannot take a WaveRNN's pitch inputs away (its weights use them)")
        state = self.state_dict()
        if config.pitch_inputs and not self.config.pitch_inputs:
            w, at = state["I.weight"], self.input_features + self.n_mels
            state["I.weight"] = torch.cat([w[:, :at], w.new_zeros(w.shape[0], SOURCE_FEATURES), w[:, at:]], dim=1)
        return state

    @property
    def receptive_field(self) -> int:
        """1 (the LPC order with linear prediction): the past samples the network sees explicitly; all
        older history lives in the GRU state."""
        return max(1, self.config.lpc_order)

    @property
    def input_features(self) -> int:
        """Per-step sample inputs of the input layer: 1 (previous sample) or ``LPC_INPUTS``."""
        return LPC_INPUTS if self.config.lpc_order else 1

    def training_loss(self, audio: Tensor, mel: Tensor | None) -> Tensor:
        """Teacher-forced cross-entropy in nats per sample (dual: coarse + fine, i.e. of the 16-bit value).

        audio [B, T] float in [-1, 1]; mel [B, n_mels, T // hop] or None when unconditioned.
        """
        if self.lpc_order:
            logits, targets = self._lpc_teacher_forced(audio, mel, align_source=True)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        logits = self.teacher_forced_logits(audio, mel)
        targets = self.encode(audio)
        if self.config.mode == "mulaw":
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        coarse, fine = targets // 256, targets % 256
        return F.cross_entropy(logits[:, :, 0].reshape(-1, 256), coarse.reshape(-1)) + F.cross_entropy(
            logits[:, :, 1].reshape(-1, 256), fine.reshape(-1)
        )

    def _generate(
        self, request: GenerateRequest, mel: Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[Tensor]:
        """Fast generation; ``request.options``: folded (bool), fold_length / fold_overlap (samples),
        fold_batch (folds to aim for when fold_length is not given, default 16; see
        ``default_fold_length``), fold_fade ("power" | "linear"), threads (intra-op threads while
        stepping, default 1), native (default True: the C step loop of ``wavernn_native`` on CPU float32
        where a compiler is found; False: the torch stepper), on_distribution / distribution_stride (the live distribution view, see
        ``studio.engine.models.distribution``: mu-law softmax, or the coarse softmax in dual mode; folded:
        segment 0's stream up to ``fold_length + 1.5 * fold_overlap``).

        Unfolded: yields a block every ``request.block_size`` samples. Folded: yields the first
        segment's samples as they become final (up to ``fold_length + 1.5 * fold_overlap``; the first
        block after ``FOLDED_FIRST_BLOCK`` samples), then the rest in blocks once the whole batch is done.
        Cancellation is checked every step (torch) or every C call of 2-10 ms (native).
        """
        temperature = self._check_temperature(request.temperature)
        block = max(1, int(request.block_size))
        opts = request.options or {}
        source = ConditioningSource(self, mel, num_samples)  # computed span by span: memory stays flat
        if opts.get("folded", False):
            length, overlap, fade = self._fold_options(opts, num_samples, next(self.parameters()).device.type)
            if fold.fold_count(num_samples, length, overlap) > 1:
                yield from self._generate_folded(request, source, generator, temperature, block, length, overlap, fade)
                return
        yield from self._generate_unfolded(request, source, generator, temperature, block)

    # -- features, classes ------------------------------------------------------------------------
    def conditioning(self, mel: Tensor | None, num_samples: int, batch: int = 1) -> Tensor:
        """Per-sample conditioning [B, num_samples, C]: ``[mel_up | source (pitch_inputs) | aux0..aux3 |
        lpc (lpc_order)]``, C = ``mel_dims + res_out_dims + lpc_order``.

        mel [B, n_mels, frames] (frames * hop >= num_samples); edges are padded by repeating the
        first/last frame ``pad`` times; the source starts at phase 0, as in generation. Unconditioned
        models get an empty [batch, T, 0] tensor.
        """
        if not self.n_mels:
            ref = next(self.parameters())
            return ref.new_zeros(batch, num_samples, 0)
        mel_up, aux = self.upsample(self.padded_mel(mel, num_samples))
        parts = [mel_up[:, :num_samples]]
        if self.config.pitch_inputs:
            parts.append(self.source_inputs(mel, num_samples).to(mel_up.dtype))
        parts.append(aux[:, :num_samples])
        if self.lpc_order:
            parts.append(self.sample_lpc(mel, 0, num_samples).to(mel_up.dtype))
        return torch.cat(parts, dim=-1)

    def source_inputs(self, mel: Tensor, num_samples: int) -> Tensor:
        """The pitch-locked source of samples [0, num_samples), from phase 0: mel [B, n_mels, frames] ->
        [B, num_samples, SOURCE_FEATURES] float32 (``audio.pitch.SourceTrack``)."""
        with torch.autocast(mel.device.type, enabled=False):
            return SourceTrack(mel.detach().float(), self.profile).features(0, num_samples)

    def _aligned_source(self, mel: Tensor, excitation: Tensor) -> tuple[Tensor, Tensor]:
        """For training and held-out losses: per segment, the start phase [B] that puts the strongest
        excitation sample [B, T] among the voiced ones (voicing > 0.5) on phase 0 (a segment without
        voiced samples gets a random one), and the source from that phase [B, T, SOURCE_FEATURES]
        (float32), from one pitch track."""
        b, t = excitation.shape
        with torch.autocast(mel.device.type, enabled=False):
            track = SourceTrack(mel.detach().float(), self.profile)
            raw = track.phases(t)  # [B, T] from phase 0
            voicing = track.features(0, t)[..., 2]
        voiced = voicing > 0.5
        score = excitation.detach().abs().to(raw.dtype) * voiced
        peak = score.argmax(dim=-1, keepdim=True)
        aligned = -raw.gather(-1, peak).squeeze(-1)
        random = (torch.rand(b, dtype=raw.dtype, device=raw.device) * 2.0 - 1.0) * math.pi
        start = torch.where(voiced.any(dim=-1), aligned, random)
        return start, source_features(wrap(raw + start.unsqueeze(-1)), voicing)

    def padded_mel(self, mel: Tensor | None, num_samples: int) -> Tensor:
        """``mel`` [B, n_mels, frames] checked (present, shaped, covering ``num_samples``) and padded by
        repeating its first/last frame ``pad`` times: [B, n_mels, frames + 2 * pad]. ValueError otherwise."""
        if mel is None:
            raise ValueError("this WaveRNN is mel-conditioned: give mel frames")
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"mel must be [B, n_mels={self.n_mels}, frames], got shape {tuple(mel.shape)}")
        hop = self.config.hop_length
        if mel.shape[2] * hop < num_samples:
            raise ValueError(f"{mel.shape[2]} mel frames cover {mel.shape[2] * hop} samples, need {num_samples}")
        pad = self.config.pad
        return F.pad(mel, (pad, pad), mode="replicate") if pad else mel

    def sample_lpc(self, mel: Tensor, start: int, stop: int) -> Tensor:
        """Predictor coefficients of samples [start, stop) from the mel frames that hold them:
        mel [B, n_mels, frames] (frame ``t // hop`` holds sample ``t``) -> [B, stop - start, lpc_order]
        (float32). Computed in float64 (``audio.lpc.lpc_from_mel``) from this frame range only, so any
        span of samples gets exactly the coefficients of the whole input."""
        hop = self.config.hop_length
        f0, f1 = start // hop, -(-stop // hop)
        per_sample = self.frame_lpc(mel, f0, f1).repeat_interleave(hop, dim=1)
        return per_sample[:, start - f0 * hop : stop - f0 * hop]

    def frame_lpc(self, mel: Tensor, f0: int, f1: int) -> Tensor:
        """Predictor coefficients of mel frames [f0, f1): [B, n_mels, frames] -> [B, f1 - f0, lpc_order]
        float32 (fewer where the mel ends first); each frame's depend on that frame alone."""
        with torch.autocast(mel.device.type, enabled=False):
            coef = lpc_from_mel(mel[..., f0:f1], self.profile, self.lpc_order)  # [B, frames, order]
        return coef.to(torch.float32)

    def encode(self, audio: Tensor) -> Tensor:
        """float [-1, 1] -> long classes: mu-law classes, or 16-bit values ``coarse * 256 + fine``."""
        if self.config.mode == "mulaw":
            return mulaw_encode(audio, self.config.bits)
        return torch.round((audio.clamp(-1.0, 1.0) + 1.0) * 32767.5).long().clamp_(0, 65535)

    def decode(self, classes: Tensor) -> Tensor:
        """Inverse of ``encode``: long classes -> float32 samples in [-1, 1]."""
        if self.config.mode == "mulaw":
            return mulaw_decode(classes, self.config.bits).float()
        return classes.float() / 32767.5 - 1.0

    def class_inputs(self) -> Tensor:
        """Network input value of each class: [2**bits] (mulaw) or [256] (a dual half), linear in [-1, 1]."""
        k = self.config.classes
        ref = next(self.parameters())
        return torch.arange(k, dtype=ref.dtype, device=ref.device) * (2.0 / (k - 1)) - 1.0

    @property
    def start_class(self) -> int:
        """Class of the sample before the first one (silence, 0.0)."""
        return int(self.encode(torch.zeros(1)).item())

    def masked_weight_ih(self) -> Tensor:
        """Dual mode: the GRU's input weights with ``c_t`` cut from the coarse half's gates."""
        return self.rnn.weight_ih_l0 * self.ih_mask

    # -- teacher-forced sequence path (training) ---------------------------------------------------
    def teacher_forced_logits(self, audio: Tensor, mel: Tensor | None) -> Tensor:
        """Logits for every sample given all earlier ones (nn.GRU over the whole segment).

        audio [B, T]; mel [B, n_mels, T // hop] or None. Returns [B, T, 2**bits] (mulaw) or
        [B, T, 2, 256] (dual: coarse, fine). Logits at ``t`` depend on samples ``< t`` only (and,
        for the fine head, on the coarse half of sample ``t``).
        """
        if audio.dim() != 2:
            raise ValueError(f"audio must be [B, T], got shape {tuple(audio.shape)}")
        b, t = audio.shape
        if self.n_mels:
            hop = self.config.hop_length
            if mel is None:
                raise ValueError("this WaveRNN is mel-conditioned: training needs mel frames")
            if t % hop or mel.shape[-1] != t // hop:
                raise ValueError(
                    f"audio of {t} samples needs a multiple of hop_length={hop} samples and {t // hop} mel "
                    f"frames; got {mel.shape[-1]} frames"
                )
        if self.lpc_order:
            return self._lpc_teacher_forced(audio, mel)[0]
        cond = self.conditioning(mel, t, batch=b)
        table = self.class_inputs()
        q = self.encode(audio)
        start = self.start_class
        if self.config.mode == "mulaw":
            inputs = table[q]
            prev = torch.cat([inputs.new_full((b, 1), float(table[start])), inputs[:, :-1]], dim=1)
            return self._mulaw_sequence(prev, cond)
        c_in, f_in = table[q // 256], table[q % 256]
        c_prev = torch.cat([c_in.new_full((b, 1), float(table[start // 256])), c_in[:, :-1]], dim=1)
        f_prev = torch.cat([f_in.new_full((b, 1), float(table[start % 256])), f_in[:, :-1]], dim=1)
        return self._dual_sequence(torch.stack([c_prev, f_prev, c_in], dim=-1), cond)

    def _lpc_teacher_forced(self, audio: Tensor, mel: Tensor, align_source: bool = False) -> tuple[Tensor, Tensor]:
        """LPC model, teacher forced on real audio [B, T]: (logits [B, T, K], excitation classes [B, T]).

        ``s`` = the pre-emphasised audio, ``p`` its prediction from the frame's coefficients and the
        real past of ``s``, the target the mu-law class of ``e = s - p``; the inputs at ``t`` are
        ``[compand(s_{t-1}), compand(p_t), class input of e_{t-1}]`` (the first step sees 0, 0 and the
        class of 0.0), as generation feeds them. ``align_source`` (``training_loss``: training and
        held-out losses) starts a pitch model's source at the phase that puts the segment's strongest
        voiced excitation on phase 0 (``_aligned_source``), where generation's pulses are; without
        it the source starts at phase 0, as in generation.
        """
        b, t = audio.shape
        cond = self.conditioning(mel, t, batch=b)
        nm, a = self.mel_dims, self.aux_dims
        coef = cond[..., nm + 4 * a :]
        s = preemphasise(audio.float()).clamp(-1.0, 1.0)
        p = predict(s, coef)
        q = past = self.encode(s - p)
        if align_source and self.config.pitch_inputs:
            source = self._aligned_source(mel, s - p)[1].to(cond.dtype)
            cond = torch.cat([cond[..., : self.n_mels], source, cond[..., nm:]], dim=-1)
        if self.training and self.config.noise_injection > 0:
            s, p, past, q = self._noisy_past(s, p, q, coef)
        table = self.class_inputs()
        s_prev = torch.cat([s.new_zeros(b, 1), s[:, :-1]], dim=1)
        e_prev = torch.cat([table.new_full((b, 1), float(table[self.start_class])), table[past][:, :-1]], dim=1)
        inputs = torch.stack([compand(s_prev, self.config.bits), compand(p, self.config.bits), e_prev], dim=-1)
        return self._mulaw_sequence(inputs, cond[..., : nm + 4 * a]), q

    def _noisy_past(self, s: Tensor, p: Tensor, q: Tensor, coef: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Noise injection (``config.noise_injection``): clean signal ``s`` [B, T], its prediction ``p`` and
        excitation classes ``q`` -> (the noisy past ``s~`` [B, T], its prediction ``p~``, the classes
        ``encode(s~ - p~)`` the network sees as its previous draws, and the target classes
        ``encode(s - p~)``; all [B, T]).

        Laplacian noise (scale uniform in [0, noise_injection] classes per segment, rounded to whole
        classes) moves each excitation class; ``s~ = s + decode(q + noise) - (s - p)``, i.e. each sample
        carries the error of a draw that missed the clean excitation, as a generated past does. The
        target is the excitation that brings the next sample back to the clean signal from ``p~``.
        """
        b = s.shape[0]
        scale = torch.rand(b, 1, device=s.device) * self.config.noise_injection
        noise = torch.distributions.Laplace(0.0, 1.0).sample(s.shape).to(s.device) * scale
        noisy_classes = (q + torch.round(noise).long()).clamp(0, self.config.classes - 1)
        s_noisy = (p + self.decode(noisy_classes)).clamp(-1.0, 1.0)
        p_noisy = predict(s_noisy, coef)
        return s_noisy, p_noisy, self.encode(s_noisy - p_noisy), self.encode(s - p_noisy)

    def _split_cond(self, cond: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        nm, a = self.mel_dims, self.aux_dims
        return cond[..., :nm], *(cond[..., nm + i * a : nm + (i + 1) * a] for i in range(4))

    def _mulaw_sequence(self, prev: Tensor, cond: Tensor) -> Tensor:
        mel_up, a0, a1, a2, a3 = self._split_cond(cond)
        prev = prev if prev.dim() == 3 else prev.unsqueeze(-1)  # [B, T, input_features]
        x = self.I(torch.cat([prev, mel_up, a0], dim=-1))
        x = self.rnn1(x)[0] + x
        x = self.rnn2(torch.cat([x, a1], dim=-1))[0] + x
        y = torch.relu(self.fc1(torch.cat([x, a2], dim=-1)))
        y = torch.relu(self.fc2(torch.cat([y, a3], dim=-1)))
        return self.fc3(y)

    def _dual_gru(self, inputs: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        args = (inputs,) if h is None else (inputs, h)
        return functional_call(self.rnn, {"weight_ih_l0": self.masked_weight_ih()}, args)

    def _dual_heads(self, h: Tensor, a1: Tensor, a2: Tensor, a3: Tensor) -> Tensor:
        half = self.config.rnn_dims // 2
        out = []
        for head, state, aux in (("coarse", h[..., :half], a1), ("fine", h[..., half:], a2)):
            y = torch.relu(getattr(self, f"{head}_fc1")(torch.cat([state, aux], dim=-1)))
            y = torch.relu(getattr(self, f"{head}_fc2")(torch.cat([y, a3], dim=-1)))
            out.append(getattr(self, f"{head}_fc3")(y))
        return torch.stack(out, dim=-2)

    def _dual_sequence(self, inputs: Tensor, cond: Tensor) -> Tensor:
        mel_up, a0, a1, a2, a3 = self._split_cond(cond)
        h = self._dual_gru(torch.cat([inputs, mel_up, a0], dim=-1))[0]
        return self._dual_heads(h, a1, a2, a3)

    # -- generation ---------------------------------------------------------------------------------
    def stepper(self) -> MulawStepper | LpcStepper | DualStepper:
        """The fast-path stepper with this model's current weights.

        Building one composes weights in float64 (about 0.1 s at 512 units), so it is cached and rebuilt
        only when a parameter changes (storage, device, dtype or in-place version: optimiser steps and
        ``load_state_dict`` both bump the version).
        """
        key = tuple((p.data_ptr(), p.device, p.dtype, p._version) for p in self.parameters())
        cached = self.__dict__.get("_stepper_cache")
        if cached is None or cached[0] != key:
            kind = LpcStepper if self.lpc_order else MulawStepper if self.config.mode == "mulaw" else DualStepper
            built = kind(self)
            self.__dict__["_stepper_cache"] = cached = (key, built)
        return cached[1]

    @property
    def draws_per_step(self) -> int:
        return 1 if self.config.mode == "mulaw" else 2

    def draw_uniforms(self, generator: torch.Generator, steps: int, batch: int = 1) -> Tensor:
        """All random numbers a generation uses, [steps, batch, draws_per_step], from ``generator`` only."""
        return torch.rand(steps, batch, self.draws_per_step, generator=generator, device=generator.device)

    @staticmethod
    def _check_temperature(temperature: float) -> float:
        t = float(temperature)
        if not math.isfinite(t) or t < 0.0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = argmax), got {temperature}")
        return t

    def _fold_options(self, opts: dict, total: int, device_type: str = "cpu") -> tuple[int, int, str]:
        hop = self.profile.hop_length
        overlap = int(opts.get("fold_overlap", DEFAULT_OVERLAP_FRAMES * hop))
        if "fold_length" in opts:
            length = int(opts["fold_length"])
        else:
            batch = int(opts.get("fold_batch", default_fold_batch(device_type)))
            if batch < 1:
                raise ValueError(f"fold_batch must be >= 1, got {batch}")
            length = default_fold_length(total, overlap, hop, batch)
        fade = str(opts.get("fold_fade", "power"))
        fold.check_fold(length, overlap)
        if fade not in fold.FADES:
            raise ValueError(f"fold_fade must be one of {fold.FADES}, got {fade!r}")
        return length, overlap, fade

    @staticmethod
    def _threads(request: GenerateRequest) -> int:
        threads = int((request.options or {}).get("threads", 1))
        if threads < 1:
            raise ValueError(f"options['threads'] must be >= 1, got {threads}")
        return threads

    @staticmethod
    def _native(request: GenerateRequest) -> bool:
        """``options['native']`` (default True): use the C step loop where it is available."""
        return bool((request.options or {}).get("native", True))

    def _chooser(
        self, uniforms: Tensor, temperature: float, tap: DistributionTap | None = None
    ) -> Callable[[Tensor, int, int], Tensor]:
        """``choose(logits, t, part)``; with a ``tap`` it also records stream 0's part-0 (mu-law or coarse)
        logits at the tapped steps (the draw itself is unchanged)."""
        if tap is None:

            def choose(logits: Tensor, t: int, part: int) -> Tensor:
                return sample_classes(logits, uniforms[t, :, part], temperature)

            return choose

        def choose_tapped(logits: Tensor, t: int, part: int) -> Tensor:
            if part == 0:
                tap.record(t, logits[0])
            return sample_classes(logits, uniforms[t, :, part], temperature)

        return choose_tapped

    def generate_classes(
        self,
        cond: Tensor,
        generator: torch.Generator,
        temperature: float,
        yield_every: int,
        should_stop: Callable[[], bool] | None = None,
        threads: int = 1,
        native: bool = True,
    ) -> Iterator[tuple[int, Tensor]]:
        """Fast path on B streams: cond [B, T, C] -> yields (steps done, classes [B, T] being filled;
        an LPC model fills the pre-emphasised signal [B, T] instead, see ``block_decoder``).

        ``threads``: torch intra-op threads on this thread while stepping (1 is fastest here, see
        ``wavernn_step._drive``). ``native``: the C step loop where available (see ``_generate_classes``).
        """
        b, total, _ = cond.shape
        spans = lambda t0, n: cond[:, t0 : t0 + n]  # noqa: E731
        yield from self._generate_classes(
            spans, b, total, generator, temperature, yield_every, should_stop, threads, None, native
        )

    def _generate_classes(
        self, spans, batch, total, generator, temperature, yield_every, should_stop, threads, tap=None, native=True
    ):
        """``generate_classes`` with conditioning asked for span by span (``spans(t0, n) -> [B, n, C]``);
        ``tap``: a ``DistributionTap`` fed with stream 0's logits (see ``_chooser``), or None.
        ``native``: step in C (``wavernn_native``) where it is available (CPU float32), else in torch; both
        draw from the same uniforms, so they make the same classes."""
        device = next(self.parameters()).device
        with intra_op_threads(threads):  # a spinning thread team on a loaded machine slows setup 10x
            uniforms = self.draw_uniforms(generator, total, batch)
            if self.lpc_order:  # the LPC stepper writes the (pre-emphasised) signal itself
                classes = torch.zeros(batch, total, dtype=next(self.parameters()).dtype, device=device)
            else:
                classes = torch.zeros(batch, total, dtype=torch.long, device=device)
            stepper = self.stepper()
            runner = None
            if native:
                from studio.engine.models.wavernn_native import native_run

                runner = native_run(stepper, batch, self.start_class)
        if runner is not None:
            runs = runner.run_spans(spans, total, uniforms, temperature, classes, yield_every, should_stop, threads, tap)
        else:
            choose = self._chooser(uniforms, temperature, tap)
            runs = stepper.run_spans(
                spans, batch, total, choose, classes, self.start_class, yield_every, should_stop, threads
            )
        for done in runs:
            yield done, classes

    def block_decoder(self, batch: int = 1) -> Callable[[Tensor], Tensor]:
        """``decode(values [batch, n]) -> float32 audio [batch, n]`` for consecutive blocks of what
        ``generate_classes`` fills: mu-law / dual classes (stateless), or an LPC model's pre-emphasised
        signal, de-emphasised with each row's filter state carried from block to block."""
        if not self.lpc_order:
            return self.decode
        state: dict[str, np.ndarray | None] = {"last": None}

        def decode(signal: Tensor) -> Tensor:
            out, state["last"] = deemphasise(signal.detach().cpu().numpy(), state=state["last"])
            return torch.from_numpy(out).to(signal.device)

        return decode

    def _generate_unfolded(self, request, source, generator, temperature, block) -> Iterator[Tensor]:
        emitted = 0
        decode = self.block_decoder(1)
        stop, threads = (lambda: request.cancelled), self._threads(request)
        spans = source.cached([0], source.total)
        tap = DistributionTap.from_request(request)
        native = self._native(request)
        runs = self._generate_classes(spans, 1, source.total, generator, temperature, block, stop, threads, tap, native)
        for done, classes in runs:
            if done > emitted:
                if tap is not None:
                    tap.flush(done)
                yield decode(classes[:1, emitted:done])[0]
                emitted = done
            if request.cancelled:
                return

    def _generate_folded(self, request, source, generator, temperature, block, length, overlap, fade):
        total = source.total
        count = fold.fold_count(total, length, overlap)
        seg = length + 2 * overlap
        log.debug("folded WaveRNN generation: %d segments of %d samples", count, seg)
        audio = torch.zeros(count, seg, device=next(self.parameters()).device)
        decoded = emitted = 0
        stop, threads = (lambda: request.cancelled), self._threads(request)
        spans = source.cached(fold.segment_starts(count, length, overlap), seg)
        # segment 0 alone decides the samples before its cross-fade: only those get rows
        tap = DistributionTap.from_request(request, limit=min(total, fold.final_prefix(seg - 1, count, length, overlap)))
        native = self._native(request)
        decode = self.block_decoder(count)
        first = min(block, FOLDED_FIRST_BLOCK)  # the head of segment 0 goes out early: playback starts sooner
        runs = self._generate_classes(spans, count, seg, generator, temperature, first, stop, threads, tap, native)
        for done, classes in runs:
            audio[:, decoded:done] = decode(classes[:, decoded:done])
            decoded = done
            ready = min(total, fold.final_prefix(done, count, length, overlap))
            due = block if emitted else first
            if done < seg and ready > emitted and (ready - emitted >= due or request.cancelled):
                if tap is not None:
                    tap.flush(ready)
                yield fold.unfold_prefix(audio, length, overlap, ready, fade)[emitted:ready]
                emitted = ready
            if request.cancelled:
                return
        if decoded < seg:
            return
        yield from stream_joined(fold.unfold(audio, length, overlap, total, fade), emitted, total, block, request, tap)

    def generate_plain(
        self,
        mel: Tensor | None,
        num_samples: int,
        generator: torch.Generator,
        temperature: float = 1.0,
        threads: int | None = 1,
    ) -> Tensor:
        """The eager baseline: one sample at a time through the nn modules themselves, unbatched.

        mel [1, n_mels, frames] or None -> float32 samples [num_samples]. Uses the same random numbers
        as the fast path (``draw_uniforms``), so with the same generator state both make the same samples.
        ``temperature`` is used as given: the config's ``sampling_temperature`` is applied by ``stream``.
        ``threads``: intra-op threads meanwhile (as the fast path; None keeps the current setting).
        """
        temperature = self._check_temperature(temperature)
        with intra_op_threads(threads):
            return self._generate_plain(mel, num_samples, generator, temperature)

    def _generate_plain(self, mel, num_samples, generator, temperature) -> Tensor:
        with torch.inference_mode():
            cond = self.conditioning(mel, num_samples)[0]
            uniforms = self.draw_uniforms(generator, num_samples)
            table = self.class_inputs()
            classes = torch.zeros(num_samples, dtype=torch.long, device=cond.device)
            start = self.start_class
            if self.lpc_order:
                signal = self._plain_lpc(cond, uniforms, temperature, table, start)
                return torch.from_numpy(deemphasise(signal.cpu().numpy())[0]).to(cond.device).clamp_(-1.0, 1.0)
            if self.config.mode == "mulaw":
                self._plain_mulaw(cond, uniforms, temperature, table, classes, start)
            else:
                self._plain_dual(cond, uniforms, temperature, table, classes, start)
            return self.decode(classes)

    def _plain_step(self, x: Tensor, cond_t: Tensor, h1: Tensor, h2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One unbatched step of the single-softmax network through the nn modules: x [n_in] sample
        inputs, cond_t [mel_dims + 4 * aux_dims (+ lpc_order)] this step's conditioning, h1 / h2 [1, 1, R]
        -> (logits [1, K], new h1, new h2)."""
        r = self.config.rnn_dims
        mel_t, a0, a1, a2, a3 = self._split_cond(cond_t)
        i = self.I(torch.cat([x, mel_t, a0]))
        o1, h1 = self.rnn1(i.view(1, 1, r), h1)
        x1 = o1.view(r) + i
        o2, h2 = self.rnn2(torch.cat([x1, a1]).view(1, 1, -1), h2)
        x2 = o2.view(r) + x1
        y = torch.relu(self.fc1(torch.cat([x2, a2])))
        y = torch.relu(self.fc2(torch.cat([y, a3])))
        return self.fc3(y).view(1, -1), h1, h2

    def _plain_mulaw(self, cond, uniforms, temperature, table, classes, start) -> None:
        r = self.config.rnn_dims
        h1 = cond.new_zeros(1, 1, r)
        h2 = cond.new_zeros(1, 1, r)
        x = table[start].view(1)
        for t in range(cond.shape[0]):
            logits, h1, h2 = self._plain_step(x, cond[t], h1, h2)
            q = sample_classes(logits, uniforms[t, :, 0], temperature)
            classes[t] = q[0]
            x = table[q]

    def _plain_lpc(self, cond, uniforms, temperature, table, start) -> Tensor:
        """LPC model, one sample at a time: returns the pre-emphasised signal [T] (see ``LpcStepper``)."""
        r, order, bits = self.config.rnn_dims, self.lpc_order, self.config.bits
        h1 = cond.new_zeros(1, 1, r)
        h2 = cond.new_zeros(1, 1, r)
        history = cond.new_zeros(order)  # s_{t-1} ... s_{t-order}
        e_in = table[start].view(1)
        signal = cond.new_zeros(cond.shape[0])
        rows = self.mel_dims + 4 * self.aux_dims
        for t in range(cond.shape[0]):
            p = (history * cond[t, rows:]).sum()
            x = torch.cat([compand(torch.stack([history[0], p]), bits), e_in])
            logits, h1, h2 = self._plain_step(x, cond[t], h1, h2)
            q = sample_classes(logits, uniforms[t, :, 0], temperature)
            s = (p + self.decode(q)[0]).clamp(-1.0, 1.0)
            signal[t] = s
            history = torch.cat([s.view(1), history[:-1]])
            e_in = table[q]
        return signal

    def _plain_dual(self, cond, uniforms, temperature, table, classes, start) -> None:
        half = self.config.rnn_dims // 2
        h = cond.new_zeros(1, 1, self.config.rnn_dims)
        c_prev, f_prev = table[start // 256].view(1), table[start % 256].view(1)
        zero = cond.new_zeros(1)
        for t in range(cond.shape[0]):
            mel_t, a0, a1, a2, a3 = self._split_cond(cond[t])
            # coarse half first: the mask makes it independent of the (still unknown) current coarse value
            _, h_a = self._dual_gru(torch.cat([c_prev, f_prev, zero, mel_t, a0]).view(1, 1, -1), h)
            logits_c = self._dual_heads(h_a.view(-1), a1, a2, a3)[0].view(1, -1)
            c = sample_classes(logits_c, uniforms[t, :, 0], temperature)
            c_in = table[c]
            _, h_b = self._dual_gru(torch.cat([c_prev, f_prev, c_in, mel_t, a0]).view(1, 1, -1), h)
            h = torch.cat([h_a[..., :half], h_b[..., half:]], dim=-1)
            logits_f = self._dual_heads(h.view(-1), a1, a2, a3)[1].view(1, -1)
            f = sample_classes(logits_f, uniforms[t, :, 1], temperature)
            classes[t] = c[0] * 256 + f[0]
            c_prev, f_prev = c_in, table[f]



COND_CONTEXT_FRAMES = 2
"""Extra mel frames on each side of a conditioning span: the upsampling's smoothing reaches at most
``sum(1 / prod(scales[:i]))`` < 1.5 frames, so interior samples equal the whole-input conditioning."""

LPC_BLOCK_FRAMES = 64
"""Mel frames whose predictor coefficients a ``ConditioningSource`` computes at a time (0.8 s at hop 200)."""

COND_SPAN_VALUES = 1 << 21
"""Floats of per-sample conditioning a ``ConditioningSource.cached`` block holds (8 MiB in float32)."""


class ConditioningSource:
    """The per-sample conditioning of one mel, computed span by span instead of all at once.

    Whole-input conditioning costs ``(n_mels + res_out_dims) * 4`` bytes per sample (832 at reference
    size: 1.1 GB for 60 s); a span costs only its own samples plus ``COND_CONTEXT_FRAMES`` frames of
    context each side. ``span(start, stop)`` -> [1, stop - start, C] equals
    ``model.conditioning(mel, total)[:, start:stop]`` (to float rounding; samples at or past ``total``
    are zero, as ``wavernn_fold.fold`` pads). ``cached(starts, length)`` gives the ``spans(t0, n)``
    callback of ``MulawStepper.run_spans`` for streams that begin at the global samples ``starts``.
    Runs on the generating thread.
    """

    def __init__(self, model: WaveRNN, mel: Tensor | None, total: int) -> None:
        self.model, self.total = model, total
        self.padded = None
        if model.n_mels:
            self.padded = model.padded_mel(mel, total)[:1]
            self.mel = mel[:1]
        self.channels = model.mel_dims + (model.config.res_out_dims if model.n_mels else 0) + model.lpc_order
        self.lpc_blocks: dict[int, Tensor] = {}
        self.source = SourceTrack(mel[:1].detach().float(), model.profile) if model.config.pitch_inputs else None

    def span(self, start: int, stop: int) -> Tensor:
        """Conditioning of global samples [start, stop) -> [1, stop - start, C]."""
        model = self.model
        ref = next(model.parameters())
        n = stop - start
        inside = max(0, min(stop, self.total) - start)
        if self.padded is None or inside <= 0:
            return ref.new_zeros(1, n, self.channels)
        hop, pad = model.config.hop_length, model.config.pad
        f0, f1 = start // hop, -(-(start + inside) // hop)
        a = max(0, f0 - COND_CONTEXT_FRAMES)
        b = min(self.padded.shape[-1], f1 + 2 * pad + COND_CONTEXT_FRAMES)
        mel_up, aux = model.upsample(self.padded[..., a:b])
        lo = start - a * hop
        parts = [mel_up[:, lo : lo + inside]]
        if self.source is not None:
            parts.append(self.source.features(start, start + inside).to(mel_up.dtype))
        parts.append(aux[:, lo : lo + inside])
        if model.lpc_order:
            parts.append(self._sample_lpc(start, start + inside).to(mel_up.dtype))
        out = torch.cat(parts, dim=-1)
        if inside < n:
            out = F.pad(out, (0, 0, 0, n - inside))
        return out

    def _sample_lpc(self, start: int, stop: int) -> Tensor:
        """``model.sample_lpc`` of samples [start, stop) -> [1, n, order], from blocks of
        ``LPC_BLOCK_FRAMES`` frames computed once each (folded generation asks for every stretch many
        times). The cache holds coefficients per frame, not per sample (hop times less: 60 s of audio
        held 61 MB per sample, 0.3 MB per frame), and expands only the span asked for."""
        hop = self.model.config.hop_length
        f0, f1 = start // hop, -(-stop // hop)
        blocks = []
        for i in range(f0 // LPC_BLOCK_FRAMES, -(-f1 // LPC_BLOCK_FRAMES)):
            if i not in self.lpc_blocks:
                lo = i * LPC_BLOCK_FRAMES
                self.lpc_blocks[i] = self.model.frame_lpc(self.mel, lo, lo + LPC_BLOCK_FRAMES)
            blocks.append(self.lpc_blocks[i])
        joined = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
        first = (f0 // LPC_BLOCK_FRAMES) * LPC_BLOCK_FRAMES
        per_sample = joined[:, f0 - first : f1 - first].repeat_interleave(hop, dim=1)
        return per_sample[:, start - f0 * hop : stop - f0 * hop]

    def cached(self, starts: list[int], length: int) -> Callable[[int, int], Tensor]:
        """``spans(t0, n)`` -> [len(starts), n, C]: stream ``i`` at global samples ``starts[i] + t0 ...``.

        Computes blocks of at least ``COND_SPAN_VALUES / (streams * C)`` steps per call (one upsampling
        call per stream per block), so the per-chunk requests of the stepper are slices.
        """
        block_steps = max(256, COND_SPAN_VALUES // max(1, len(starts) * self.channels))
        held = {"lo": 0, "hi": 0, "block": None}

        def spans(t0: int, n: int) -> Tensor:
            if held["block"] is None or t0 < held["lo"] or t0 + n > held["hi"]:
                # the first request gets just what it asks for: the first block should not wait for more
                hi = min(length, t0 + (n if held["block"] is None else max(n, block_steps)))
                held["block"] = torch.cat([self.span(s + t0, s + hi) for s in starts], dim=0)
                held["lo"], held["hi"] = t0, hi
            return held["block"][:, t0 - held["lo"] : t0 - held["lo"] + n]

        return spans


__all__ = [
    "ConditioningSource", "WaveRNN", "WaveRNNConfig", "compand", "default_fold_length", "sample_classes",
    "suggest_upsample_scales",
]
