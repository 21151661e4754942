"""Folded WaveNet generation: a long mel cut into overlapping segments, generated as one batch, joined.

Layout, with ``L = fold_length``, ``O = fold_overlap`` and ``C = min(FOLD_CROSSFADE, O // 2)``
(samples): segment ``i`` covers global samples ``[i*L, i*L + L + O)``, so neighbours share ``O``
samples. Every segment starts from silence, so its first ``W = O - C`` samples are a warm-up (its
receptive field filling with its own samples) and are thrown away; over the next ``C`` samples the
earlier segment fades out and the later one fades in (equal power: two separately generated segments
are nearly uncorrelated). The default overlap is the receptive field + ``FOLD_CROSSFADE``, so a
segment has seen a full receptive field of its own output before it is heard.

All segments advance one sample per step, so a step costs about one batched step of the network
instead of ``count`` steps. Segment 0 is final up to ``L + W`` and is streamed as it is made; the rest
is joined when all steps are done.

Distribution view (``options['on_distribution']``, see ``distribution``): rows of segment 0's stream
for the samples it alone decides (``[0, L + W)``), handed over with the blocks streamed while stepping
(the last of them with the first joined block); the other joined blocks come without rows.

Threads: runs on the generating thread; checks the cancel token every few samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from studio.engine.models.distribution import DistributionTap
from studio.engine.models.wavenet_fast import IncrementalWaveNet, StepperCancelled, intra_op_threads

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.base import GenerateRequest
    from studio.engine.models.wavenet import WaveNet

FOLD_CROSSFADE = 256
DEFAULT_FOLD_LENGTH = 8000
"""Longest default segment (samples); shorter when that gives fewer than ``DEFAULT_FOLD_BATCH`` folds."""
DEFAULT_FOLD_BATCH = 32
"""Folds to aim for when ``fold_length`` is not given (see ``default_fold_length``)."""


def default_fold_length(total: int, overlap: int, batch: int = DEFAULT_FOLD_BATCH) -> int:
    """Segment length (samples) for ``total`` samples when the request names none.

    A batched step costs far less than ``batch`` single steps until the products become compute bound
    (reference size, one thread, oneDNN, measured here: 0.63 / 2.2 / 3.3 / 5.5 ms per step for
    1 / 16 / 32 / 64 streams), so short audio is cut into about ``batch`` folds, each at least
    ``overlap`` and at most ``DEFAULT_FOLD_LENGTH`` long.
    """
    want = -(-max(1, total - overlap) // max(1, batch))
    return int(max(overlap, min(DEFAULT_FOLD_LENGTH, want)))


def fold_count(total: int, length: int, overlap: int) -> int:
    """Segments needed so that ``count*length + overlap >= total`` (at least one)."""
    check_fold(length, overlap)
    return max(1, math.ceil((total - overlap) / length))


def check_fold(length: int, overlap: int) -> None:
    """ValueError unless ``length >= overlap >= 2`` (samples)."""
    if overlap < 2 or length < overlap:
        raise ValueError(f"need fold_length >= fold_overlap >= 2 samples, got fold_length={length}, fold_overlap={overlap}")


def crossfade_length(overlap: int) -> int:
    return min(FOLD_CROSSFADE, overlap // 2)


def join_segments(segments: torch.Tensor, total: int, length: int, overlap: int) -> torch.Tensor:
    """``segments [count, length + overlap]`` -> ``[total]``: warm-ups dropped, seams cross-faded."""
    count, seg_len = segments.shape
    if seg_len != length + overlap:
        raise ValueError(f"segments are {seg_len} samples long, expected {length + overlap}")
    fade = crossfade_length(overlap)
    warm = overlap - fade
    out = segments.new_zeros(count * length + overlap)
    s = (torch.arange(fade, dtype=segments.dtype, device=segments.device) + 0.5) / fade
    fade_in, fade_out = torch.sin(0.5 * math.pi * s), torch.cos(0.5 * math.pi * s)
    out[: length + warm] = segments[0, : length + warm]
    for i in range(1, count):
        start = i * length
        out[start + warm : start + overlap] = (
            segments[i - 1, length + warm :] * fade_out + segments[i, warm:overlap] * fade_in
        )
        out[start + overlap : start + length + warm] = segments[i, overlap : length + warm]
    last = (count - 1) * length
    out[last + length + warm :] = segments[-1, length + warm :]
    return out[:total]


def _batched_cond(
    model: WaveNet, mel: torch.Tensor | None, starts: list[int], t: int, n: int, valid: int, request=None
):
    """Conditioning ``[B, cond_channels, n]`` of samples ``start_b + t ...``; zeros beyond the mel's end.
    Returns None early (and the caller stops) when ``request`` is cancelled between folds."""
    if mel is None or model.upsampler is None:
        return None
    parts = []
    for start in starts:
        if request is not None and request.cancelled:
            return None
        lo, hi = start + t, start + t + n
        inside = min(hi, valid)
        if inside > lo:
            part = model.upsampler.span(mel, lo, inside)
            if inside < hi:  # past the end: never heard (causal), any values do
                part = torch.nn.functional.pad(part, (0, hi - inside))
        else:
            part = mel.new_zeros(mel.shape[0], model.config.cond_channels, n)
        parts.append(part)
    return torch.cat(parts, dim=0)


def generate_folded(
    model: WaveNet,
    request: GenerateRequest,
    mel: torch.Tensor | None,
    num_samples: int,
    generator: torch.Generator,
    noise_stream,
    chunk_values: int,
    check_every: int,
) -> Iterator[torch.Tensor]:
    """Yield audio blocks of a folded generation (see the module doc).

    noise_stream: the sampling-noise class of ``wavenet`` (``(generator, batch, classes, temperature,
    device)``); chunk_values: bound on conditioning floats held at once; check_every: samples between
    looks at the cancel flag. Options: ``fold_length``, ``fold_overlap`` (samples), ``fold_batch`` (folds
    to aim for when ``fold_length`` is not given).
    """

    cfg = model.config
    overlap = int(request.options.get("fold_overlap", model.receptive_field + FOLD_CROSSFADE))
    if "fold_length" in request.options:
        length = int(request.options["fold_length"])
    else:
        batch = int(request.options.get("fold_batch", DEFAULT_FOLD_BATCH))
        if batch < 1:
            raise ValueError(f"fold_batch must be >= 1, got {batch}")
        length = default_fold_length(num_samples, overlap, batch)
    count = fold_count(num_samples, length, overlap)
    seg_len = length + overlap
    starts = [i * length for i in range(count)]
    final0 = min(num_samples, length + overlap - crossfade_length(overlap))  # segment 0 alone up to here
    valid = num_samples if mel is None else mel.shape[-1] * model.profile.hop_length
    block = max(1, int(request.block_size))
    device = model.embed.weight.device
    # setup under the stepping thread count too: with two threads on a loaded machine, packing the
    # weights of a large batch took seconds (OpenMP barriers), all of it before the first cancel look
    with torch.inference_mode(), intra_op_threads(request.options.get("threads", 1)):
        speaker = model._speaker_tensor(request, count, device)
        try:
            stepper = IncrementalWaveNet(model, count, should_stop=lambda: request.cancelled)
        except StepperCancelled:
            return
        noise = noise_stream(generator, count, cfg.out_classes, request.temperature, device)
        classes = torch.empty(seg_len + 1, count, dtype=torch.long, device=device)
        classes[0] = model.silence_class
        scratch = torch.empty(count, cfg.out_classes, device=device)
        tap = DistributionTap.from_request(request, limit=final0)
    chunk = max(16, chunk_values // (cfg.layers * cfg.gate_channels * count))
    # the upsampled conditioning is far smaller per step than the layer biases: compute it for longer
    # spans (one upsampler call per fold per span, not per bias chunk)
    cond_span = max(chunk, chunk_values // (max(1, cfg.cond_channels) * count))
    cond_block, cond_lo, cond_hi = None, 0, 0
    temperature = float(request.temperature)
    t = 0
    sent = 0
    while t < seg_len:
        with torch.inference_mode(), intra_op_threads(request.options.get("threads", 1)):
            if t >= cond_hi and not request.cancelled:
                cond_lo, cond_hi = t, min(seg_len, t + cond_span)
                cond_block = _batched_cond(model, mel, starts, cond_lo, cond_hi - cond_lo, valid, request)
            n = 0 if request.cancelled else min(chunk, cond_hi - t)
            if n:
                cond = None if cond_block is None else cond_block[..., t - cond_lo : t - cond_lo + n]
                biases = model.layer_biases(cond, speaker, count, n, stepper.projection)
                biases = (biases * stepper.gate_scale).unbind(0)
            for i in range(n):
                logits = stepper.step_scaled(classes[t], biases[i].unbind(0))
                if tap is not None:
                    tap.record(t, logits[0])
                if temperature > 0:
                    torch.add(logits, noise.at(t), out=scratch)
                    torch.argmax(scratch, dim=1, out=classes[t + 1])
                else:
                    torch.argmax(logits, dim=1, out=classes[t + 1])
                t += 1
                if t % check_every == 0 and request.cancelled:
                    break
            ready = min(t, final0)
            piece = None
            if ready - sent >= block or (ready > sent and request.cancelled):
                piece = model.decode(classes[sent + 1 : ready + 1, 0])
        if piece is not None:
            sent = ready
            if tap is not None:
                tap.flush(sent)
            yield piece
        if request.cancelled:
            return
    with torch.inference_mode():
        audio = join_segments(model.decode(classes[1:].t()), num_samples, length, overlap)
    if tap is not None:  # rows of segment 0's last own samples go with the first joined block
        tap.flush(num_samples)
    for lo in range(sent, num_samples, block):
        yield audio[lo : lo + block]
        if request.cancelled:
            return
