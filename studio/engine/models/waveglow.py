"""WaveGlow: a flow-based parallel vocoder (mel → waveform), behind the ``WaveformModel`` interface.

After Prenger, Valle & Catanzaro, "WaveGlow: A Flow-based Generative Network for Speech Synthesis"
(ICASSP 2019) and NVIDIA's public reference. The audio [B, T] is squeezed into groups of ``n_group``
samples [B, G, T/G]; the mel is upsampled to one vector per sample by a transposed convolution
(stride = hop) and grouped the same way. Each of ``n_flows`` flows applies an invertible 1×1
convolution and an affine coupling whose shift and log-scale come from a WaveNet-like ``WN``; every
``n_early_every`` flows ``n_early_size`` channels leave early as latent. Training maximises the exact
likelihood of audio under a Gaussian latent of standard deviation ``sigma``; inference draws
z ~ N(0, σ²) and runs the flows backwards.

Generation is parallel and yields per segment: long mels are cut into chunks of frames with enough
context on each side to cover what one output sample depends on (``overlap_frames``), so the joined
output equals one whole pass given the same latent, which is drawn for the whole utterance first.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from studio.engine.audio import lpc
from studio.engine.audio.features import FeatureProfile
from studio.engine.audio.projection import check_model_setting
from studio.engine.models.base import GenerateRequest, WaveformModel, register_family
from studio.engine.models.fast_linear import auto_threads, intra_op_threads
from studio.engine.models.waveglow_denoiser import WaveGlowDenoiser
from studio.engine.models.waveglow_fast import FastWN, InferenceCancelled
from studio.engine.models.waveglow_flow import (
    WN,
    Invertible1x1Conv,
    convert_weight_norm_keys,
    fold_weight_norm,
    squeeze_audio,
    squeeze_condition,
    unsqueeze_audio,
)

log = logging.getLogger(__name__)

MIN_CHUNK_FRAMES = 32
"""Streaming chunks hold at least this many mel frames (and at least twice the overlap)."""
CUDA_CHUNK_FRAMES = 1024
"""Default chunk on a GPU (~12 s at hop 256: most utterances in one pass). The 32-frame CPU default made
the first H100 run launch-bound (854 kHz at reference size for 10 s, docs/perf.md phase 6), while one
pass of 1024 frames takes tens of milliseconds there; predicted: 2-4 MHz. Any chunking gives the same audio."""


def default_chunk_frames(overlap: int, device_type: str) -> int:
    """Mel frames per streaming chunk when the request names none: small on the CPU (the first block
    comes sooner), ``CUDA_CHUNK_FRAMES`` on a GPU; always at least twice the overlap."""
    base = CUDA_CHUNK_FRAMES if device_type == "cuda" else MIN_CHUNK_FRAMES
    return max(base, 2 * overlap)


MAX_LPC_ORDER = lpc.MAX_ORDER

UPSAMPLE_ALIGNMENTS = ("center", "end")


@dataclass(frozen=True)
class WaveGlowConfig:
    """Hyper-parameters of a WaveGlow (defaults: NVIDIA's published 22.05 kHz model).

    n_mels: mel bands of the conditioning (must equal the feature profile's).
    n_flows: flows (invertible 1×1 conv + affine coupling). n_group: samples squeezed into one step.
    n_early_every, n_early_size: every ``n_early_every`` flows, ``n_early_size`` channels leave as latent.
    wn_layers, wn_channels, wn_kernel_size: the coupling WaveNet (dilations 1, 2, …, 2^(layers−1);
        odd kernel, non-causal).
    upsample_window: kernel length of the transposed-conv mel upsampler, in samples (stride = the
        profile's hop; 1024 = 4 hops at 22.05 kHz in the reference).
    upsample_align: "center" crops the upsampler's extra (window − hop) samples evenly from both ends,
        so a sample's conditioning is centred on its own frame; "end" crops them all from the end,
        as NVIDIA's reference does (needed to run its checkpoints).
    sigma: standard deviation of the latent assumed in training (1.0 in the reference; generation uses
        the request's sigma, 0.6 by default).
    lpc_order: 0 (the flows model the waveform) or the order of the linear prediction computed from the
        mel (``studio.engine.audio.lpc``): the flows then model the prediction's excitation and generation
        runs it through the mel's all-pole filter and de-emphasis (``infer`` returns the excitation).
    spectral_projection: None (the default: the output as the network and filter make it) or the
        passes, after the first, that bring the output's mel to the conditioning mel
        (``studio.engine.audio.projection``; 0 = one pass): a generation setting stored
        with the model, like the default ``sigma`` of a request; a request's ``options["spectral_projection"]``
        overrides it. Needs a mel.
    """

    n_mels: int = 80
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    wn_layers: int = 8
    wn_channels: int = 256
    wn_kernel_size: int = 3
    upsample_window: int = 1024
    upsample_align: str = "center"
    sigma: float = 1.0
    lpc_order: int = 0
    spectral_projection: int | None = None

    def __post_init__(self) -> None:
        positive = ("n_mels", "n_flows", "n_group", "n_early_every", "wn_layers", "wn_channels", "upsample_window")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"WaveGlowConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_early_size, int) or self.n_early_size < 0:
            raise ValueError(f"WaveGlowConfig.n_early_size must be an integer ≥ 0, got {self.n_early_size!r}")
        if not isinstance(self.wn_kernel_size, int) or self.wn_kernel_size < 1 or self.wn_kernel_size % 2 == 0:
            raise ValueError(f"WaveGlowConfig.wn_kernel_size must be an odd positive integer, got {self.wn_kernel_size!r}")
        if self.upsample_align not in UPSAMPLE_ALIGNMENTS:
            raise ValueError(f"WaveGlowConfig.upsample_align must be one of {UPSAMPLE_ALIGNMENTS}, got {self.upsample_align!r}")
        if not (isinstance(self.sigma, int | float) and self.sigma > 0):
            raise ValueError(f"WaveGlowConfig.sigma must be > 0, got {self.sigma!r}")
        if not isinstance(self.lpc_order, int) or not 0 <= self.lpc_order <= MAX_LPC_ORDER:
            raise ValueError(f"WaveGlowConfig.lpc_order must be in 0..{MAX_LPC_ORDER} (0 = no linear prediction), "
                             f"got {self.lpc_order!r}")
        check_model_setting(self.spectral_projection, self.n_mels)
        channels = self.channels_per_flow()
        bad = [(k, c) for k, c in enumerate(channels) if c < 2 or c % 2]
        if bad:
            k, c = bad[0]
            raise ValueError(
                f"WaveGlowConfig: flow {k} would see {c} channels (n_group={self.n_group}, "
                f"n_early_every={self.n_early_every}, n_early_size={self.n_early_size}, n_flows={self.n_flows}); "
                "every flow needs an even number ≥ 2"
            )

    def early_flows(self) -> list[int]:
        """Indices of the flows before which ``n_early_size`` channels leave as latent."""
        if self.n_early_size == 0:
            return []
        return [k for k in range(1, self.n_flows) if k % self.n_early_every == 0]

    def channels_per_flow(self) -> list[int]:
        """How many grouped channels each flow transforms."""
        early = set(self.early_flows())
        out, remaining = [], self.n_group
        for k in range(self.n_flows):
            if k in early:
                remaining -= self.n_early_size
            out.append(remaining)
        return out


@register_family
class WaveGlow(WaveformModel):
    """The WaveGlow vocoder. See the module doc; shapes: audio [B, T], mel [B, n_mels, T // hop]."""

    family = "waveglow"
    config_class = WaveGlowConfig
    warm_start_fields = ("spectral_projection",)
    STREAM_OPTIONS = ("chunk_frames", "overlap_frames", "fp16", "threads")

    def __init__(self, config: WaveGlowConfig, profile: FeatureProfile) -> None:
        super().__init__(config, profile)
        hop = profile.hop_length
        if config.n_mels != profile.n_mels:
            raise ValueError(
                f"WaveGlow config has n_mels={config.n_mels} but feature profile '{profile.name}' has "
                f"n_mels={profile.n_mels}; make them equal"
            )
        if hop % config.n_group:
            raise ValueError(
                f"hop_length={hop} of profile '{profile.name}' must be a multiple of n_group={config.n_group}"
            )
        if config.upsample_window < hop:
            raise ValueError(f"upsample_window={config.upsample_window} must be ≥ hop_length={hop}")
        self.hop_length = hop
        self.upsample = nn.ConvTranspose1d(config.n_mels, config.n_mels, config.upsample_window, stride=hop)
        self._early = config.early_flows()
        channels = config.channels_per_flow()
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        for c in channels:
            self.convinv.append(Invertible1x1Conv(c))
            self.WN.append(
                WN(c // 2, config.n_mels * config.n_group, config.wn_layers, config.wn_channels, config.wn_kernel_size)
            )
        self._weight_norm_paths = [
            name for name, m in self.named_modules() if isinstance(m, nn.Conv1d) and parametrize.is_parametrized(m)
        ]
        self.register_load_state_dict_pre_hook(self._adapt_weight_norm_keys)
        self._denoiser: tuple[tuple, WaveGlowDenoiser] | None = None
        self._fast: tuple[tuple, list[FastWN]] | None = None

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """Samples of latent (or audio) one output sample depends on through the WN convolutions.

        A parallel model has no past/future asymmetry: this is the full two-sided span,
        n_group · (2 · n_flows · half_span + 1), half_span = (k − 1)/2 · (2^layers − 1) grouped steps
        per coupling, because the flows compound. The mel upsampler adds ``upsample_window`` samples
        of mel context on top (see ``context_samples``).
        """
        c = self.config
        return c.n_group * (2 * c.n_flows * WN.half_span(c.wn_layers, c.wn_kernel_size) + 1)

    @property
    def context_samples(self) -> int:
        """Samples on each side of a sample that can change it: flows, upsampler and denoiser STFT."""
        c = self.config
        flows = c.n_group * c.n_flows * WN.half_span(c.wn_layers, c.wn_kernel_size)
        return flows + max(c.upsample_window, self.profile.n_fft)

    @property
    def overlap_frames(self) -> int:
        """Mel frames of context a streaming chunk takes on each side so that it matches a whole pass."""
        return math.ceil(self.context_samples / self.hop_length)

    # -- weight norm ----------------------------------------------------------------------------
    @property
    def weight_norm_active(self) -> bool:
        return any(parametrize.is_parametrized(m) for m in self.modules() if isinstance(m, nn.Conv1d))

    def remove_weight_norm(self) -> WaveGlow:
        """Fold weight norm into plain weights (same function, faster inference); idempotent. Returns self.

        Call it on a model loaded for inference, not on one an optimizer is still training.
        """
        folded = fold_weight_norm(self)
        if folded:
            log.debug("folded weight norm of %d convolutions", folded)
        return self

    def _adapt_weight_norm_keys(self, module, state_dict, prefix, *args) -> None:
        """Accept weight-normed, folded and legacy (weight_g / weight_v) layouts in ``load_state_dict``."""
        for path in self._weight_norm_paths:
            conv = self.get_submodule(path)
            convert_weight_norm_keys(state_dict, f"{prefix}{path}.", parametrize.is_parametrized(conv))

    # -- the flow -------------------------------------------------------------------------------
    def upsample_mel(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        """mel [B, n_mels, F] → one conditioning vector per sample [B, n_mels, length], length ≤ F · hop."""
        frames = mel.shape[-1]
        if length > frames * self.hop_length:
            raise ValueError(f"{frames} mel frames cover {frames * self.hop_length} samples, not {length}")
        up = self.upsample(mel)
        start = (self.config.upsample_window - self.hop_length) // 2 if self.config.upsample_align == "center" else 0
        return up[..., start : start + length]

    def _check_mel(self, mel: torch.Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel must be [batch, n_mels={self.config.n_mels}, frames], got {tuple(mel.shape)}")

    def forward(
        self, audio: torch.Tensor, mel: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """audio [B, T] (T a multiple of n_group, ≤ frames · hop), mel [B, n_mels, frames] →
        (z [B, n_group, T / n_group], log_s per flow [B, C_k / 2, T / n_group], log|det W| per flow, scalars).

        z's channels are the early outputs in flow order, then the channels left after the last flow.
        """
        self._check_mel(mel)
        if audio.dim() != 2 or audio.shape[0] != mel.shape[0]:
            raise ValueError(f"audio must be [batch, samples] matching mel {tuple(mel.shape)}, got {tuple(audio.shape)}")
        g = self.config.n_group
        cond = squeeze_condition(self.upsample_mel(mel, audio.shape[1]), g)
        x = squeeze_audio(audio, g)
        early_out: list[torch.Tensor] = []
        log_s_list: list[torch.Tensor] = []
        log_det_w_list: list[torch.Tensor] = []
        for k, (inv_conv, wn) in enumerate(zip(self.convinv, self.WN, strict=True)):
            if k in self._early:
                early_out.append(x[:, : self.config.n_early_size])
                x = x[:, self.config.n_early_size :]
            x, log_det_w = inv_conv(x)
            half = x.shape[1] // 2
            x0, x1 = x[:, :half], x[:, half:]
            out = wn(x0, cond)
            shift, log_s = out[:, :half], out[:, half:]
            x = torch.cat([x0, torch.exp(log_s) * x1 + shift], dim=1)
            log_s_list.append(log_s)
            log_det_w_list.append(log_det_w)
        z = torch.cat([*early_out, x], dim=1)
        return z, log_s_list, log_det_w_list

    def negative_log_likelihood(
        self, z: torch.Tensor, log_s_list: list[torch.Tensor], log_det_w_list: list[torch.Tensor]
    ) -> torch.Tensor:
        """The WaveGlow loss per dimension: (Σ z²/(2σ²) − Σ log s − Σ log|det W|) / z.numel().

        As in the reference it leaves out the constant ½·log(2πσ²) per dimension (nats).
        """
        sigma = self.config.sigma
        log_s_total = sum(ls.float().sum() for ls in log_s_list)
        log_det_total = sum(ld.float() for ld in log_det_w_list)
        nll = (z.float() ** 2).sum() / (2 * sigma**2) - log_s_total - log_det_total
        return nll / z.numel()

    def training_loss(self, audio: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        """Negative log-likelihood per dimension of audio [B, T] (or, with ``lpc_order``, of its
        excitation under the mel's prediction) given mel [B, n_mels, frames]."""
        if mel is None:
            raise ValueError("WaveGlow is mel-conditioned: training_loss needs mel frames")
        if self.config.lpc_order:
            coefficients = lpc.sample_coefficients(mel, self.profile, self.config.lpc_order, audio.shape[1])
            audio = lpc.excitation(audio, coefficients)
        return self.negative_log_likelihood(*self(audio, mel))

    def infer(
        self,
        mel: torch.Tensor,
        sigma: float = 0.6,
        generator: torch.Generator | None = None,
        z: torch.Tensor | None = None,
        fast: bool = False,
        should_stop=None,
    ) -> torch.Tensor:
        """Run the flows backwards: mel [B, n_mels, F] → audio [B, F · hop] (not clamped).

        z: the latent [B, n_group, F · hop / n_group] (as ``forward`` returns it); when None it is drawn
        as N(0, σ²) from ``generator`` (torch's global one when None). Runs under inference mode.
        fast: run the couplings from a snapshot of their weights (``waveglow_fast``; the same function,
        faster on a CPU); False runs the modules themselves (the plain baseline).
        should_stop: optional callable polled between flows (and, on the fast path, between coupling
        layers); when it returns True, ``InferenceCancelled`` (``waveglow_fast``) is raised.
        """
        self._check_mel(mel)
        if not sigma >= 0:
            raise ValueError(f"sigma must be ≥ 0, got {sigma}")
        g, e = self.config.n_group, self.config.n_early_size
        length = mel.shape[-1] * self.hop_length
        with torch.inference_mode():
            cond = squeeze_condition(self.upsample_mel(mel, length), g)
            shape = (mel.shape[0], g, length // g)
            if z is None:
                z = torch.randn(shape, generator=generator, device=mel.device, dtype=torch.float32) * sigma
            elif tuple(z.shape) != shape:
                raise ValueError(f"latent z must have shape {shape}, got {tuple(z.shape)}")
            early_offset = {k: i * e for i, k in enumerate(self._early)}
            couplings = self.fast_couplings() if fast else self.WN
            x = z[:, len(self._early) * e :]
            for k in reversed(range(self.config.n_flows)):
                if should_stop is not None and should_stop():
                    raise InferenceCancelled
                half = x.shape[1] // 2
                x0 = x[:, :half]
                out = couplings[k](x0, cond, should_stop) if fast else couplings[k](x0, cond)
                shift, log_s = out[:, :half], out[:, half:]
                x1 = (x[:, half:] - shift) * torch.exp(-log_s)
                x = self.convinv[k].inverse(torch.cat([x0, x1.to(x0.dtype)], dim=1))
                if k in early_offset:
                    start = early_offset[k]
                    x = torch.cat([z[:, start : start + e].to(x.dtype), x], dim=1)
            return unsqueeze_audio(x)

    def fast_couplings(self) -> list[FastWN]:
        """Weight snapshots of the coupling networks for ``infer(fast=True)``, rebuilt after the weights change."""
        key = tuple((p._version, p.data_ptr(), p.dtype) for p in self.parameters())
        if self._fast is None or self._fast[0] != key:
            with torch.no_grad():
                self._fast = (key, [FastWN(wn) for wn in self.WN])
        return self._fast[1]

    # -- denoiser -------------------------------------------------------------------------------
    def denoiser(self) -> WaveGlowDenoiser:
        """The bias denoiser for the current weights (rebuilt after they change or move)."""
        key = tuple((p._version, p.data_ptr()) for p in self.parameters())
        if self._denoiser is None or self._denoiser[0] != key:
            self._denoiser = (key, WaveGlowDenoiser(self))
        return self._denoiser[1]

    # -- streaming generation -------------------------------------------------------------------
    @property
    def supports_denoise(self) -> bool:
        """The bias denoiser serves waveform WaveGlows only: with ``lpc_order`` the flows model the
        excitation, and subtracting their bias made every strength worse, before or after the
        synthesis filter (docs/models.md), so such a model refuses it."""
        return self.config.lpc_order == 0

    def _generate(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        if request.denoise > 0 and not self.supports_denoise:
            raise ValueError(
                f"this WaveGlow models the excitation of an order-{self.config.lpc_order} linear prediction, where the "
                "bias denoiser makes the audio worse at every strength (docs/models.md): set denoise to 0"
            )
        chunks = self._generate_chunks(request, mel, num_samples, generator)  # the excitation with lpc_order
        yield from lpc.synthesised(chunks, mel[0], self.profile, self.config.lpc_order)

    def _generate_chunks(
        self, request: GenerateRequest, mel: torch.Tensor | None, num_samples: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """Yield the audio (with ``lpc_order``: the excitation) of consecutive chunks of mel frames (see module doc).

        request.options: "chunk_frames" (frames per yielded segment; default ``default_chunk_frames``),
        "overlap_frames" (context per side; default ``overlap_frames``, less is faster but no longer
        exact), "fp16" (half precision autocast on CUDA; ignored on CPU, which stays float32),
        "threads" (torch intra-op threads while a chunk runs: an int, None = the process setting, or
        "auto", the default: all cores on an idle machine, one on a loaded one, ``fast_linear.auto_threads``).
        """
        if mel is None:
            raise ValueError("WaveGlow is mel-conditioned: give mel frames")
        if not request.sigma >= 0:
            raise ValueError(f"sigma must be ≥ 0, got {request.sigma}")
        if not request.denoise >= 0:
            raise ValueError(f"denoise strength must be ≥ 0, got {request.denoise}")
        hop, g = self.hop_length, self.config.n_group
        frames = mel.shape[-1]
        needed = min(frames, math.ceil(num_samples / hop))
        overlap = int(request.options.get("overlap_frames", self.overlap_frames))
        chunk = int(request.options.get("chunk_frames", default_chunk_frames(overlap, mel.device.type)))
        if chunk <= 0 or overlap < 0:
            raise ValueError(f"chunk_frames must be > 0 and overlap_frames ≥ 0, got {chunk} and {overlap}")
        # the whole utterance's latent first, so that any chunking gives the same audio
        z = torch.randn((1, g, frames * hop // g), generator=generator, device=mel.device) * request.sigma
        fp16 = bool(request.options.get("fp16", False)) and mel.device.type == "cuda"
        precision = torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()
        denoiser = self.denoiser() if request.denoise > 0 else None
        threads = request.options.get("threads", "auto")
        if threads == "auto":
            threads = auto_threads() if mel.device.type == "cpu" else None
        for start in range(0, needed, chunk):
            if request.cancelled:
                return
            stop = min(start + chunk, needed)
            lo, hi = max(0, start - overlap), min(frames, stop + overlap)
            try:
                with precision, intra_op_threads(threads):
                    audio = self.infer(
                        mel[..., lo:hi], request.sigma, z=z[..., lo * hop // g : hi * hop // g], fast=True,
                        should_stop=lambda: request.cancelled,
                    )
            except InferenceCancelled:  # cancelled mid-chunk: nothing of this chunk is ready
                return
            audio = audio[0].float()
            if denoiser is not None:
                audio = denoiser(audio, request.denoise)
            yield audio[(start - lo) * hop : (stop - lo) * hop]
