"""Training the content encoder (``content``) from phone-labelled recordings of one speaker.

The data is festvox-ru's own: every studio recording ``wav/ru_NNNN.wav`` has a Festival label file
``lab/ru_NNNN.lab`` (one line per phone: end time in seconds, a number, the phone name). Per
recording: WORLD analysis at 16 kHz (5 ms frames), the coded envelope (``ENVELOPE_DIMS``
coefficients) of the speech frames (within 40 dB of the loudest), the label of the phone each frame's
centre falls in. Augmentation against speaker identity: each recording's envelope is also coded after
frequency warps (``WARPS``, vocal-tract lengths 0.85–1.17 of the speaker's), and each warped set is
standardised with its *own* statistics per voicing class — the way a take of another speaker is
standardised before matching — plus Gaussian input noise during training.

The network (torch here, numpy at conversion time): ±``context`` frames of 39 standardised
coefficients → 512 ReLU → 256 ReLU (the content key) → one logit per phone; cross-entropy, Adam with
a one-cycle schedule; ``members`` networks of successive seeds merged into one (``merge_encoders``).
Measured (2026-11-27, 2 shared cores): the 588 training recordings (≈ 896 k speech frames × 5 warps)
take ~4 min to analyse in two processes and ~10 min per member for 6 epochs on two threads; frame
accuracy on the held-out recordings ru_0801–ru_0844: one member 0.733 unwarped (0.722 / 0.694 warped
by 0.85 / 1.17), three merged 0.758 (0.752 / 0.732); 51 phones, the most frequent covers 0.11 of the
frames.

Runs on the calling thread. ``train_content_encoder`` is what ``studio voice train-content`` calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.engine.convert import world
from studio.engine.convert.content import ContentEncoder, context_rows, merge_encoders
from studio.engine.convert.frameselect import standardise
from studio.engine.convert.transforms import warp_frequency_axis
from studio.engine.convert.voice import ENVELOPE_DIMS, VOICE_SAMPLE_RATE, VoiceError, speech_mask

log = logging.getLogger(__name__)

WARPS = (0.85, 0.92, 1.0, 1.08, 1.17)
DEFAULT_CONTEXT = 8
DEFAULT_EPOCHS = 6
HIDDEN = (512, 256)
INPUT_NOISE = 0.1
BATCH = 512
PEAK_LR = 2e-3


@dataclass(frozen=True)
class LabelledRecording:
    """A recording and its Festival label file."""

    audio: Path
    labels: Path


def read_labels(path: Path) -> tuple[np.ndarray, list[str]]:
    """A Festival label file → (end times in seconds [P], phone names [P]), in file order.

    Lines before ``#`` are a header; each later line is ``END NUMBER NAME``. VoiceError for a file
    without any phone line or with an unreadable time."""
    ends: list[float] = []
    names: list[str] = []
    body = False
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not body:
            body = line.strip() == "#"
            continue
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            ends.append(float(parts[0]))
        except ValueError:
            raise VoiceError(f"{path}: {line!r} is not 'END NUMBER PHONE'") from None
        names.append(parts[2])
    if not names:
        raise VoiceError(f"{path}: no phone labels (expected a '#' line, then 'END NUMBER PHONE' lines)")
    return np.asarray(ends), names


def frame_phones(ends: np.ndarray, names: Sequence[str], frames: int, period_s: float) -> list[str]:
    """The phone each frame's time (frame i at i · period_s) falls in; frames past the last label take
    the last phone."""
    idx = np.minimum(np.searchsorted(ends, np.arange(frames) * period_s), len(names) - 1)
    return [names[i] for i in idx]


def labelled_recordings(audio_files: Sequence[Path]) -> list[LabelledRecording]:
    """Pair each ``…/wav/NAME.wav`` with ``…/lab/NAME.lab`` (the festvox layout); recordings without
    a label file are left out."""
    out = []
    for wav in audio_files:
        lab = Path(wav).parent.parent / "lab" / (Path(wav).stem + ".lab")
        if lab.is_file():
            out.append(LabelledRecording(Path(wav), lab))
    return out


@dataclass
class FrameSet:
    """Speech frames of labelled recordings: ``coded[warp]`` [N, D] per warp factor, ``phones`` [N]
    (names), ``voiced`` [N] bool, ``breaks`` [N] bool (True at a recording's first frame)."""

    coded: dict[float, np.ndarray]
    phones: np.ndarray
    voiced: np.ndarray
    breaks: np.ndarray


def _analyse_one(rec: LabelledRecording, warps: Sequence[float]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One recording's speech frames: coded envelopes per warp (float32), phone names, voiced flags."""
    from studio.engine.convert.corpora import load_speech

    audio = load_speech(rec.audio, VOICE_SAMPLE_RATE)
    feats = world.analyze(audio, VOICE_SAMPLE_RATE)
    base = world.code_envelope(feats.sp, VOICE_SAMPLE_RATE, ENVELOPE_DIMS)
    speech = speech_mask(base)
    ends, names = read_labels(rec.labels)
    labels = np.asarray(frame_phones(ends, names, feats.frames, feats.frame_period_ms / 1000.0))
    coded = [
        (base if w == 1.0 else world.code_envelope(warp_frequency_axis(feats.sp, w), VOICE_SAMPLE_RATE, ENVELOPE_DIMS))[speech]
        .astype(np.float32)
        for w in warps
    ]
    return coded, labels[speech], feats.voiced[speech]


def analyse(
    recordings: Sequence[LabelledRecording],
    warps: Sequence[float] = WARPS,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> FrameSet:
    """WORLD-analyse each recording at 16 kHz and code its speech frames' envelopes at each warp;
    ``workers`` > 1 analyses in that many processes (festvox-ru's 588 recordings: ~15 min in one)."""
    warps = list(warps)
    results: list[tuple[list[np.ndarray], np.ndarray, np.ndarray]] = []
    if workers > 1 and len(recordings) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(_analyse_one, recordings, [warps] * len(recordings), chunksize=4):
                results.append(result)
                if progress is not None:
                    progress(len(results), len(recordings))
    else:
        for rec in recordings:
            results.append(_analyse_one(rec, warps))
            if progress is not None:
                progress(len(results), len(recordings))
    if not results:
        raise VoiceError("no labelled recordings to train the content encoder on")
    breaks = []
    for _, labels, _ in results:
        first = np.zeros(labels.size, dtype=bool)
        first[:1] = True
        breaks.append(first)
    return FrameSet(
        coded={w: np.concatenate([r[0][i] for r in results]) for i, w in enumerate(warps)},
        phones=np.concatenate([r[1] for r in results]),
        voiced=np.concatenate([r[2] for r in results]),
        breaks=np.concatenate(breaks),
    )


def own_standardised(coded: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Coefficients 1… of coded [N, D] standardised with the set's own voiced/unvoiced mean and spread
    (no lifter): what the encoder sees, for a set of frames of one (possibly warped) speaker."""
    stats = []
    for rows in (voiced, ~voiced):
        x = coded[rows] if rows.any() else coded
        stats += [x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3)]
    return standardise(coded.astype(np.float64), voiced, *stats, lifter=False).astype(np.float32)


def accuracy(encoder: ContentEncoder, frames: FrameSet, warp: float = 1.0) -> float:
    """Share of ``frames`` (at ``warp``) whose most probable phone is their label."""
    z = own_standardised(frames.coded[warp], frames.voiced)
    best = encoder.phone_posteriors(z, frames.breaks).argmax(axis=1)
    names = np.asarray(encoder.phones)
    return float(np.mean(names[best] == frames.phones))


def train_content_encoder(
    train: FrameSet,
    held_out: FrameSet | None = None,
    *,
    context: int = DEFAULT_CONTEXT,
    epochs: int = DEFAULT_EPOCHS,
    members: int = 1,
    threads: int = 2,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ContentEncoder:
    """Train the phone classifier on ``train`` (all its warps) and return it as a ContentEncoder whose
    ``record`` holds the data size, epochs, wall time and (with ``held_out``) frame accuracies.

    ``members`` > 1 trains that many networks (seeds ``seed``, ``seed`` + 1, …) and merges them
    (``content.merge_encoders``): which frames one network's keys pick varies with its seed (all 29
    allison → ru prompts: similarity 0.739–0.756 over four seeds), an ensemble's keys do not."""
    start = time.monotonic()
    nets = []
    for m in range(members):
        tell = progress if members == 1 or progress is None else (lambda text, m=m: progress(f"member {m + 1}/{members}: {text}"))
        nets.append(_train_one(train, context, epochs, threads, seed + m, tell))
    encoder = merge_encoders(nets) if members > 1 else nets[0]
    encoder.record = {
        "frames": int(train.phones.size),
        "warps": [float(w) for w in sorted(train.coded)],
        "epochs": epochs,
        "members": members,
        "seeds": list(range(seed, seed + members)),
        "context": context,
        "hidden": list(HIDDEN),
        "input_noise": INPUT_NOISE,
        "wall_seconds": round(time.monotonic() - start, 1),
    }
    if held_out is not None:
        record_accuracy(encoder, held_out)
    return encoder


def record_accuracy(encoder: ContentEncoder, held_out: FrameSet) -> None:
    """Put ``held_out``'s frame count and frame accuracy per warp into ``encoder.record``."""
    encoder.record["held_out_frames"] = int(held_out.phones.size)
    encoder.record["held_out_accuracy"] = {str(w): round(accuracy(encoder, held_out, w), 4) for w in sorted(held_out.coded)}


def _train_one(
    train: FrameSet, context: int, epochs: int, threads: int, seed: int, progress: Callable[[str], None] | None
) -> ContentEncoder:
    import torch

    from studio.engine.models.fast_linear import intra_op_threads

    warps = sorted(train.coded)
    phones = sorted(set(train.phones.tolist()))
    index = {p: i for i, p in enumerate(phones)}
    with intra_op_threads(threads):
        torch.manual_seed(seed)
        # The standardised frames of every warp, one after the other [W·N, D − 1], and per frame the rows
        # its context gathers: batches are stacked on the fly (stacking all of them at once would take
        # (2·context + 1) times the memory: 12 GB for festvox-ru).
        n = train.phones.size
        z = torch.from_numpy(np.concatenate([own_standardised(train.coded[w], train.voiced) for w in warps]))
        gather = torch.from_numpy(context_rows(train.breaks, context))
        y = torch.from_numpy(np.tile(np.array([index[p] for p in train.phones]), len(warps))).long()
        count = y.shape[0]
        dims = (2 * context + 1) * z.shape[1]
        net = torch.nn.Sequential(
            torch.nn.Linear(dims, HIDDEN[0]), torch.nn.ReLU(), torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN[1], len(phones)),
        )
        batches = max(1, count // BATCH)
        opt = torch.optim.Adam(net.parameters(), lr=PEAK_LR / 25)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, PEAK_LR, total_steps=epochs * batches)
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            order = torch.randperm(count, generator=generator)
            total = 0.0
            for b in range(batches):
                rows = order[b * BATCH : (b + 1) * BATCH]
                x = z[gather[rows % n] + (rows // n * n).unsqueeze(1)].reshape(len(rows), dims)
                noisy = x + INPUT_NOISE * torch.randn(len(rows), dims, generator=generator)
                loss = torch.nn.functional.cross_entropy(net(noisy), y[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                total += loss.item()
            message = f"epoch {epoch + 1}/{epochs}: loss {total / batches:.3f}"
            log.debug(message)
            if progress is not None:
                progress(message)
        layers = [m for m in net if isinstance(m, torch.nn.Linear)]
        weights = {}
        for i, layer in enumerate(layers, start=1):
            weights[f"w{i}"] = layer.weight.detach().numpy().T.copy()
            weights[f"b{i}"] = layer.bias.detach().numpy().copy()
    return ContentEncoder(context=context, envelope_dims=train.coded[warps[0]].shape[1], phones=phones, weights=weights)
