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

Steppers: on CPU float32 weights the native folded loop (``wavenet_native.NativeFoldedWaveNet``: the
conditioning projection inside its products, the folds split among ``options['threads']`` worker
threads, default ``wavenet_native.default_fold_threads()``, about ``NATIVE_FOLDS_PER_THREAD`` folds per
worker when ``fold_length``/``fold_batch`` are not given); otherwise, or with ``options['native'] =
False`` or without a C compiler, the torch ``IncrementalWaveNet`` batch (``threads`` = intra-op threads,
default 1, about ``DEFAULT_FOLD_BATCH`` folds). Both compute the same samples (``tests/test_fastpaths.py``).

Distribution view (``options['on_distribution']``, see ``distribution``): rows of segment 0's stream
for the samples it alone decides (``[0, L + W)``), handed over with the blocks streamed while stepping
(the last of them with the first joined block); the other joined blocks come without rows.

Threads: runs on the generating thread (the native loop's workers only within each call); checks the
cancel token every step (torch) or between native calls sized to 2-10 ms (``NATIVE_RUN_SECONDS``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import torch

from studio.engine.models.distribution import DistributionTap
from studio.engine.models.folded_stream import stream_joined
from studio.engine.models.wavenet_fast import IncrementalWaveNet, StepperCancelled, intra_op_threads

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.base import GenerateRequest
    from studio.engine.models.wavenet import WaveNet

FOLD_CROSSFADE = 256
DEFAULT_FOLD_LENGTH = 8000
"""Longest default segment (samples); shorter when that gives fewer than ``DEFAULT_FOLD_BATCH`` folds."""
DEFAULT_FOLD_BATCH = 32
"""Folds to aim for when ``fold_length`` is not given (see ``default_fold_length``), torch steps."""
CUDA_FOLD_BATCH = 256
"""The same on a GPU, where the torch step is bound by kernel launches (1.3 ms per step at reference size
on the first H100 run, whatever the batch; docs/perf.md phase 6): folds cost nearly nothing there, so
10 s is cut into ~256 folds of at least ``overlap``: predicted ~100 kHz at reference size."""
NATIVE_FOLDS_PER_THREAD = 8
"""Folds to aim for per worker thread of the native folded loop (``wavenet_native.NativeFoldedWaveNet``).
Measured at reference size (CPU time of one thread, load ~5): 105 / 153 / 170-189 / 172 / 178-191 GFLOP/s
for 4 / 6 / 8 / 12 / 16 folds per thread. Fewer, longer folds waste less on warm-ups (each fold throws its
first ``overlap - crossfade`` samples away), so about 8 per thread gives the least work per output sample
(2 s at reference size, one thread: 8 folds of 6179 steps cost ~0.9x the time of 12 or 16 folds)."""
NATIVE_RUN_SECONDS = (0.002, 0.01)
"""Wall time one call of the native folded loop aims for (between two looks at the cancel flag): the steps
per call double below the first bound and halve above the second."""


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
    native_lib = _native_library_for(model, request)
    device = model.embed.weight.device
    if "fold_length" in request.options:
        length = int(request.options["fold_length"])
    else:
        default_batch = (
            NATIVE_FOLDS_PER_THREAD * _fold_threads(request) if native_lib is not None
            else CUDA_FOLD_BATCH if device.type == "cuda" else DEFAULT_FOLD_BATCH
        )
        batch = int(request.options.get("fold_batch", default_batch))
        if batch < 1:
            raise ValueError(f"fold_batch must be >= 1, got {batch}")
        length = default_fold_length(num_samples, overlap, batch)
    count = fold_count(num_samples, length, overlap)
    seg_len = length + overlap
    starts = [i * length for i in range(count)]
    final0 = min(num_samples, length + overlap - crossfade_length(overlap))  # segment 0 alone up to here
    valid = num_samples if mel is None else mel.shape[-1] * model.profile.hop_length
    block = max(1, int(request.block_size))
    if native_lib is not None:
        yield from _native_folded(
            model, request, mel, num_samples, generator, noise_stream, chunk_values, native_lib,
            (length, overlap, count, seg_len, starts, final0, valid, block),
        )
        return
    threads = request.options.get("threads", 1)
    # setup under the stepping thread count too: with two threads on a loaded machine, packing the
    # weights of a large batch took seconds (OpenMP barriers), all of it before the first cancel look
    with torch.inference_mode(), intra_op_threads(threads):
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
        with torch.inference_mode(), intra_op_threads(threads):
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
        sent = yield from _segment0_block(model, request, classes, t, final0, sent, block, tap, threads)
        if request.cancelled:
            return
    yield from _joined(model, request, classes, num_samples, length, overlap, sent, block, tap)


def _segment0_block(
    model, request, classes, t, final0, sent, block, tap, threads
) -> Generator[torch.Tensor, None, int]:
    """After ``t`` steps: yield segment 0's final samples from ``sent`` on as one block once there are
    ``block`` of them (any number when ``request`` is cancelled), with their distribution rows handed
    over just before; return how many samples are sent now. ``threads``: intra-op threads of the decode
    (those of the stepping)."""
    ready = min(t, final0)
    if not (ready - sent >= block or (ready > sent and request.cancelled)):
        return sent
    with torch.inference_mode(), intra_op_threads(threads):
        piece = model.decode(classes[sent + 1 : ready + 1, 0])
    if tap is not None:
        tap.flush(ready)
    yield piece
    return ready


def _joined(model, request, classes, num_samples, length, overlap, sent, block, tap) -> Iterator[torch.Tensor]:
    """The joined audio after the last step, from sample ``sent`` on, in ``block``-sized pieces."""
    with torch.inference_mode():
        audio = join_segments(model.decode(classes[1:].t()), num_samples, length, overlap)
    yield from stream_joined(audio, sent, num_samples, block, request, tap)


def _native_library_for(model: WaveNet, request: GenerateRequest):
    """The native step library when this request may use it (CPU float32 weights, ``options['native']``
    not False, built or buildable), else None (the torch steps)."""
    weight = model.embed.weight
    if not request.options.get("native", True) or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return None
    from studio.engine.models.wavenet_native import native_library

    return native_library()


def _fold_threads(request: GenerateRequest) -> int:
    """Worker threads of the native folded loop: ``options['threads']``, else
    ``wavenet_native.default_fold_threads()``."""
    from studio.engine.models.wavenet_native import default_fold_threads

    threads = request.options.get("threads")
    if threads is None:
        return default_fold_threads()
    if int(threads) < 1:
        raise ValueError(f"options['threads'] must be >= 1, got {threads}")
    return int(threads)


def _native_folded(model, request, mel, num_samples, generator, noise_stream, chunk_values, lib, layout):
    """``generate_folded`` on the native folded loop: the same samples as the torch steps (to float32
    rounding of the logits), with the conditioning projection inside the C products and the folds shared
    out among ``options['threads']`` worker threads (default ``wavenet_native.default_fold_threads``)."""
    from studio.engine.models.wavenet_native import NativeFoldedWaveNet

    length, overlap, count, seg_len, starts, final0, valid, block = layout
    cfg = model.config
    device = model.embed.weight.device
    threads = _fold_threads(request)
    with torch.inference_mode(), intra_op_threads(1):
        speaker = model._speaker_tensor(request, count, device)
        try:
            stepper = NativeFoldedWaveNet(model, lib, count, speaker, threads, should_stop=lambda: request.cancelled)
        except StepperCancelled:
            return
        noise = noise_stream(generator, count, cfg.out_classes, request.temperature, device)
        noise_block = noise.shape[0]
        classes = torch.empty(seg_len + 1, count, dtype=torch.long, device=device)
        classes[0] = model.silence_class
        tap = DistributionTap.from_request(request, limit=final0)
        run_logits = torch.empty(noise_block, 1, cfg.out_classes) if tap is not None else None
    # upsampled conditioning per span of steps, as [span, B, cond_channels] rows for the C loop
    cond_span = max(64, chunk_values // (max(1, cfg.cond_channels) * count))
    cond_rows, cond_lo, cond_hi = None, 0, 0
    temperature = float(request.temperature)
    t, sent, run = 0, 0, 4  # run: steps per native call, adapted to NATIVE_RUN_SECONDS
    while t < seg_len:
        with torch.inference_mode(), intra_op_threads(1):
            if t >= cond_hi:  # the first span only as long as the first block: it is heard sooner
                cond_lo, cond_hi = t, min(seg_len, t + (cond_span if t else min(cond_span, max(64, block))))
                spans = _batched_cond(model, mel, starts, cond_lo, cond_hi - cond_lo, valid, request)
                cond_rows = None if spans is None else spans.permute(2, 0, 1).contiguous()
            if not request.cancelled:  # a cancel before the call: no step, the partial block below
                m = min(run, cond_hi - t, noise_block - t % noise_block)
                cond = None if cond_rows is None else cond_rows[t - cond_lo : t - cond_lo + m]
                rows = noise.rows(t, m) if temperature > 0 else None
                began = time.perf_counter()
                stepper.run(classes, cond, rows, t, m, run_logits)
                took = time.perf_counter() - began
                if tap is not None:
                    tap.record_span(t, run_logits[:m, 0])
                if took < NATIVE_RUN_SECONDS[0] and m == run:
                    run = min(512, run * 2)
                elif took > NATIVE_RUN_SECONDS[1]:
                    run = max(1, run // 2)
                t += m
        sent = yield from _segment0_block(model, request, classes, t, final0, sent, block, tap, 1)
        if request.cancelled:
            return
    yield from _joined(model, request, classes, num_samples, length, overlap, sent, block, tap)
