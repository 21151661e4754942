"""kNN frame selection: every source frame's envelope is replaced by real frames of the target speaker.

The approach of kNN-VC (Baas et al. 2023) with features that exist offline here (WORLD's coded
envelope instead of a self-supervised network's):

1. **Vocal-tract warp** (``estimate_warp``): the source's envelopes are stretched along frequency by
   the factor that best lays its mean log-spectrum onto the target's (a male → female conversion
   lands near 1.15), so that matching compares the same phonetic events, not the same frequencies.
2. **Speaker normalisation**: coefficients 1… of the coded envelope (coefficient 0 is the level) are
   standardised per speaker (voiced and unvoiced frames apart), weighted by a falling lifter (1 for
   coefficient 1 down to ``KEY_LIFTER_END`` for the last: the coarse shape, which says which sound it
   is, counts more than the fine detail, which says more about whose vocal tract it is) and stacked
   with ``context`` frames either side (weighted ½), giving a key per frame [N, (2·context + 1)·(D − 1)].
3. **Alignment** (``align``, iterative nearest neighbours as in INCA, Erro et al. 2010): an affine map of
   the source's keys is fitted to their nearest target keys and the target keys' nearest source
   keys, applied, and fitted again (``iterations`` times), held near the identity by a prior. It is
   fitted on voiced speech and moves the voiced keys only.
   Mean/variance normalisation alone leaves a speaker bias, and a biased match picks the target
   frames that sound most like the source.
4. **Selection**: per source frame the ``k`` target frames of the same voicing with the highest
   cosine similarity — of the keys, or (``ContentMatch``, the default offline) of the keys and of the
   content encoder's keys together (``content``: a phone classifier's hidden layer, which says which
   sound a frame is more than whose it is), weighted; their envelopes and band aperiodicities are averaged, then smoothed along time
   with a Hann window of ``smoothing`` frames (frame-to-frame jumps between frames of different
   recordings are what makes WORLD's output sound rough; a 65 ms window removes them and keeps the
   phonetic transitions). The source's level contour is kept: each output frame gets the power of its
   source frame (``mapping.match_frame_power``).
5. **Global-variance post-filter** (``restore_variance``, in ``mapping``): averaging and smoothing
   shrink the envelope's variation over time; each coefficient's spread over the utterance is moved
   ``variance_restore`` of the way (in the log domain) towards the target speaker's spread.

Target keys are computed once per voice and kept in ``voice.cache``. Pure numpy on the calling thread;
cost ~N_source · N_target · key size multiply-adds (offline ≈ 2–5 s per 10 s of speech on a loaded
core, alignment included). Short blocks (the live path's hops) are matched without context and
without alignment, with the per-hop matcher (``SelectionSettings.per_hop``: the store's unit keys kept
as contiguous columns, so a hop is one small product) and a :class:`WarpEstimator` whose target side is
precomputed: a 30 ms hop's selection costs well under a millisecond. Both give the same frames and
warp as the batched path (tests/test_convert_per_hop.py checks it on real clips).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.engine.convert.voice import Voice, stored_envelopes
from studio.engine.convert.world import decode_envelope

WARP_RANGE = (0.8, 1.25)
KEY_LIFTER_END = 0.3  # key weight of the last coefficient (the first has 1, linear in between)
WARP_BAND_HZ = (150.0, 5000.0)
MIN_ALIGN_FRAMES = 40
# Weight of the identity prior of the alignment map (``align``), in key pairs. Measured on all
# held-out utterances (29 allison, 32 festvox-ru; the earlier map had a ridge of 1 towards zero):
# allison → ru similarity 0.737 → 0.737, margin +0.179 → +0.167, DNSMOS 2.875 → 2.958; ru → allison
# 0.794 → 0.804, +0.186 → +0.203, DNSMOS 3.156 → 3.199 (2000: 0.738/+0.171/2.942 and
# 0.800/+0.202/3.192; 10 000: 0.735/+0.162/2.968 and 0.805/+0.200/3.190; no alignment at all:
# 0.722/+0.139/3.008 for allison → ru).
DEFAULT_ALIGN_PRIOR = 5000.0
_CHUNK = 1024


@dataclass(frozen=True)
class SelectionSettings:
    """k: frames averaged per source frame; context: key frames either side; iterations: alignment
    passes (0: none); smoothing: length in frames of the time smoothing (1: none); window: "hann"
    (weighted, the default) or "box" (moving average, the earlier method); warp: the source's
    frequency warp factor, or None to estimate it; per_hop: match with :func:`nearest_cosine_columns`
    (for a few query frames at a time, the live hops; same picks as the batched matcher); align_prior:
    the alignment map's pull towards the identity, in key pairs (see :func:`align`)."""

    k: int = 2
    context: int = 3
    iterations: int = 3
    smoothing: int = 13
    window: str = "hann"
    warp: float | None = None
    per_hop: bool = False
    align_prior: float = DEFAULT_ALIGN_PRIOR


@dataclass(frozen=True)
class ContentMatch:
    """Content keys for :func:`select_frames`: the ``encoder`` (a ``content.ContentEncoder``), the
    target voice's content keys [N, H] (unit rows, float32, :func:`target_content`) and the ``weight``
    in [0, 1] of content similarity against envelope-key similarity (each a cosine)."""

    encoder: object
    target: np.ndarray
    weight: float


@dataclass(frozen=True)
class Selection:
    """Per source frame [T]: the averaged coded envelope [T, D] and band aperiodicity [T, B]."""

    envelope: np.ndarray
    bap: np.ndarray
    warp: float


def _warp_ratios() -> np.ndarray:
    return np.linspace(WARP_RANGE[0], WARP_RANGE[1], 46)


def estimate_warp(source_mean: np.ndarray, target_mean: np.ndarray, sample_rate: int, fft_size: int) -> float:
    """The frequency-stretch factor in WARP_RANGE that best maps the source's mean coded envelope [D]
    onto the target's (least squares between level-free log spectra in WARP_BAND_HZ)."""
    both = decode_envelope(np.stack([source_mean, target_mean]).astype(np.float64), sample_rate, fft_size)
    log_s, log_t = np.log(np.maximum(both, 1e-30))
    hz = np.arange(log_s.shape[0]) * sample_rate / fft_size
    band = (hz >= WARP_BAND_HZ[0]) & (hz <= WARP_BAND_HZ[1])
    ref = log_t[band] - log_t[band].mean()
    best, best_err = 1.0, np.inf
    for ratio in _warp_ratios():
        warped = np.interp(hz / ratio, hz, log_s)[band]
        err = float(np.mean((warped - warped.mean() - ref) ** 2))
        if err < best_err:
            best, best_err = float(ratio), err
    return best


class WarpEstimator:
    """:func:`estimate_warp` against one fixed target mean, for many source means (the live path calls
    it every hop with the running source statistics).

    The target's level-free log spectrum and, per candidate ratio, the interpolation geometry (bracketing
    bins and offsets, as ``np.interp`` computes them) are computed once; :meth:`estimate` then decodes
    the source mean and scores all ratios in one vectorised pass, with the same arithmetic per value as
    :func:`estimate_warp` (same ratio). Immutable after construction: safe to share between threads."""

    def __init__(self, target_mean: np.ndarray, sample_rate: int, fft_size: int) -> None:
        self.sample_rate, self.fft_size = int(sample_rate), int(fft_size)
        log_t = np.log(np.maximum(decode_envelope(np.asarray(target_mean, np.float64)[None], sample_rate, fft_size), 1e-30))[0]
        hz = np.arange(log_t.shape[0]) * sample_rate / fft_size
        band = (hz >= WARP_BAND_HZ[0]) & (hz <= WARP_BAND_HZ[1])
        self._ref = log_t[band] - log_t[band].mean()
        self._ratios = _warp_ratios()
        x = np.stack([(hz / ratio)[band] for ratio in self._ratios])  # [R, band bins]: where each warped bin reads
        lo = np.clip(np.searchsorted(hz, x, side="right") - 1, 0, hz.shape[0] - 2)
        self._lo, self._hi = lo, lo + 1
        self._offset = x - hz[lo]
        self._step = hz[lo + 1] - hz[lo]
        self._below, self._above = x < hz[0], x >= hz[-1]

    def estimate(self, source_mean: np.ndarray) -> float:
        """The ratio in WARP_RANGE that best maps ``source_mean`` [D] onto the target (see estimate_warp)."""
        spectrum = decode_envelope(np.asarray(source_mean, np.float64)[None], self.sample_rate, self.fft_size)
        log_s = np.log(np.maximum(spectrum, 1e-30))[0]
        lo_val, hi_val = log_s[self._lo], log_s[self._hi]
        warped = (hi_val - lo_val) / self._step * self._offset + lo_val
        warped = np.where(self._below, log_s[0], np.where(self._above, log_s[-1], warped))
        err = np.mean((warped - warped.mean(axis=1, keepdims=True) - self._ref) ** 2, axis=1)
        return float(self._ratios[int(np.argmin(err))])


def warp_estimator(voice: Voice, sample_rate: int, fft_size: int) -> WarpEstimator:
    """The :class:`WarpEstimator` towards ``voice``'s voiced mean envelope (cached on the voice)."""
    key = f"frameselect/warp/{int(sample_rate)}/{int(fft_size)}"
    cached = voice.cache.get(key)
    if cached is None:
        cached = WarpEstimator(voice.arrays["env_mean_voiced"].astype(np.float64), sample_rate, fft_size)
        voice.cache[key] = cached
    return cached


def stack_context(z: np.ndarray, breaks: np.ndarray | None, context: int) -> np.ndarray:
    """[N, C] → [N, (2·context + 1)·C]: each frame with its neighbours ±1…±context (weight ½),
    never reaching across a ``breaks`` boundary (True at the first frame of a recording)."""
    if context == 0:
        return z
    n = z.shape[0]
    segment = np.cumsum(breaks) if breaks is not None else np.zeros(n, dtype=np.int64)
    parts = [z]
    here = np.arange(n)
    for d in range(1, context + 1):
        for step in (-d, d):
            idx = np.clip(here + step, 0, n - 1)
            idx = np.where(segment[idx] == segment, idx, here)
            parts.append(0.5 * z[idx])
    return np.concatenate(parts, axis=1)


def key_lifter(dims: int) -> np.ndarray:
    """Weights [dims − 1] of coefficients 1 … dims − 1 in a key: 1 falling linearly to KEY_LIFTER_END."""
    return np.linspace(1.0, KEY_LIFTER_END, max(dims - 1, 1))


def standardise(coded: np.ndarray, voiced: np.ndarray, mean_v, std_v, mean_u, std_u, lifter: bool = True) -> np.ndarray:
    """Coefficients 1… of coded envelopes [N, D] standardised with voiced/unvoiced statistics → [N, D − 1],
    weighted by :func:`key_lifter` unless ``lifter`` is False."""
    z = np.empty((coded.shape[0], coded.shape[1] - 1))
    z[voiced] = (coded[voiced, 1:] - mean_v[1:]) / std_v[1:]
    z[~voiced] = (coded[~voiced, 1:] - mean_u[1:]) / std_u[1:]
    return z * key_lifter(coded.shape[1]) if lifter else z


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def nearest_cosine(queries: np.ndarray, keys_unit: np.ndarray, k: int) -> np.ndarray:
    """Indices [Q, k] of the k keys (rows already unit length) most cosine-similar to each query."""
    k = min(k, keys_unit.shape[0])
    q = _unit(queries).astype(keys_unit.dtype, copy=False)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for i in range(0, q.shape[0], _CHUNK):
        sims = q[i : i + _CHUNK] @ keys_unit.T
        out[i : i + _CHUNK] = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.arange(k)
    return out


# OpenBLAS computes a product of up to 4 · 65536 multiply-adds (m · n · k) on the calling thread and
# splits larger ones over its worker threads (interface/gemm.c, GEMM_MULTITHREAD_THRESHOLD).
SINGLE_THREAD_PRODUCT = 4 * 65536


def nearest_cosine_columns(queries: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """Indices [Q, k] of the k keys most cosine-similar to each query, for few queries (a live hop).

    ``columns``: the unit-length keys as a C-contiguous [K, M] array (a TargetIndex's ``columns_*``).
    Same similarities and the same top-k as :func:`nearest_cosine` (picks may come in another order
    within the k). A hop's product (7 × 39 × 32k) is done in column slices small enough for OpenBLAS
    to keep each on the calling thread: as one threaded product it waits for a second core, which on
    a loaded 2-core machine costs 4–9 ms per hop instead of ~0.4 ms. Runs on the calling thread."""
    m = columns.shape[1]
    k = min(k, m)
    q = _unit(queries).astype(columns.dtype, copy=False)
    if k >= m:
        return np.broadcast_to(np.arange(k), (q.shape[0], k)).copy()
    sims = np.empty((q.shape[0], m), dtype=columns.dtype)
    step = max(1, SINGLE_THREAD_PRODUCT // max(1, q.shape[0] * q.shape[1]))
    for start in range(0, m, step):
        np.matmul(q, columns[:, start : start + step], out=sims[:, start : start + step])
    np.negative(sims, out=sims)
    return np.argpartition(sims, k - 1, axis=1)[:, :k]


@dataclass(frozen=True)
class TargetIndex:
    """A voice's stored frames ready for matching: envelopes [N, D], bap [N, B], voiced [N] bool,
    keys [N, K] and unit-length float32 keys per voicing class (rows [M, K], and the same as
    C-contiguous columns [K, M] for the per-hop matcher; None: made from the rows when needed)."""

    envelope: np.ndarray
    bap: np.ndarray
    voiced: np.ndarray
    keys: np.ndarray
    unit_voiced: np.ndarray
    unit_unvoiced: np.ndarray
    rows_voiced: np.ndarray
    rows_unvoiced: np.ndarray
    columns_voiced: np.ndarray | None = field(default=None, repr=False)
    columns_unvoiced: np.ndarray | None = field(default=None, repr=False)


class NoFramesError(ValueError):
    """The voice stores no frames to select from (a format-1 voice, or an empty store)."""


def _stored_standardised(voice: Voice, lifter: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The voice's stored envelopes [N, D], voiced flags [N] and the envelopes standardised with the
    voice's own statistics [N, D − 1] (lifted or not, see :func:`standardise`)."""
    a = voice.arrays
    env = stored_envelopes(voice)
    voiced = a["frames_voiced"].astype(bool)
    stats = (a[n].astype(np.float64) for n in ("env_mean_voiced", "env_std_voiced", "env_mean_unvoiced", "env_std_unvoiced"))
    return env, voiced, standardise(env, voiced, *stats, lifter=lifter)


def target_index(voice: Voice, context: int) -> TargetIndex:
    """The voice's :class:`TargetIndex` (computed once per ``context`` and cached on the voice).

    NoFramesError when the voice has no stored frames (``voice.has_frames`` is False): use the
    statistics method for it (``mapping.convert_to_voice`` does so by itself)."""
    if not voice.has_frames:
        raise NoFramesError(f"voice {voice.name!r} stores no frames for frame selection; use the statistics method")
    key = f"frameselect/{context}/{KEY_LIFTER_END}"
    cached = voice.cache.get(key)
    if cached is not None:
        return cached
    a = voice.arrays
    env, voiced, z = _stored_standardised(voice, lifter=True)
    keys = stack_context(z, a["frames_break"].astype(bool), context)
    rows_v, rows_u = np.flatnonzero(voiced), np.flatnonzero(~voiced)
    unit_v, unit_u = _unit(keys[rows_v]).astype(np.float32), _unit(keys[rows_u]).astype(np.float32)
    index = TargetIndex(
        envelope=env, bap=a["frames_bap"].astype(np.float64), voiced=voiced, keys=keys,
        unit_voiced=unit_v, unit_unvoiced=unit_u, rows_voiced=rows_v, rows_unvoiced=rows_u,
        columns_voiced=np.ascontiguousarray(unit_v.T), columns_unvoiced=np.ascontiguousarray(unit_u.T),
    )
    voice.cache[key] = index
    return index


def target_content(voice: Voice, encoder) -> np.ndarray:
    """The content keys [N, H] (unit rows, float32) of the voice's stored frames under ``encoder``:
    envelopes standardised with the voice's own statistics (no lifter), context never crossing a
    recording break. Computed once per voice and encoder (~3 s for 38 000 frames with the bundled
    three-member encoder)."""
    key = f"content/{encoder.identity}"
    cached = voice.cache.get(key)
    if cached is not None:
        return cached
    _, _, z = _stored_standardised(voice, lifter=False)
    keys = encoder.keys(z, voice.arrays["frames_break"].astype(bool))
    voice.cache[key] = keys
    return keys


def nearest_combined(
    queries: np.ndarray, keys_unit: np.ndarray, query_content: np.ndarray, content_unit: np.ndarray, weight: float, k: int
) -> np.ndarray:
    """Indices [Q, k] of the k rows with the highest ``(1 − weight) · cos(envelope keys) + weight ·
    cos(content keys)``; ``keys_unit`` [M, K] and ``content_unit`` [M, H] rows are unit length,
    ``query_content`` [Q, H] too (``queries`` [Q, K] are normalised here)."""
    k = min(k, keys_unit.shape[0])
    q = _unit(queries).astype(keys_unit.dtype, copy=False)
    c = query_content.astype(content_unit.dtype, copy=False)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for i in range(0, q.shape[0], _CHUNK):
        sims = (1.0 - weight) * (q[i : i + _CHUNK] @ keys_unit.T) + weight * (c[i : i + _CHUNK] @ content_unit.T)
        out[i : i + _CHUNK] = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.arange(k)
    return out


def align(
    queries: np.ndarray, fit_rows: np.ndarray, targets: np.ndarray, iterations: int, prior: float = DEFAULT_ALIGN_PRIOR
) -> np.ndarray:
    """Iterative nearest-neighbour alignment of ``queries`` [T, K] to the ``targets`` key cloud [M, K].

    ``fit_rows`` picks the query frames the affine map is fitted on (voiced speech). Each pass pairs
    every fitted query with its nearest target and every target with its nearest query, solves an
    affine least-squares map from the original queries to the paired targets, and maps all queries
    with it. The map is regularised towards the identity with weight ``prior`` (in pairs: the squared
    error of ``prior`` pairs that the identity would fit exactly): both key sets are already
    standardised per speaker, so the map only has to correct what standardisation leaves, and an
    unconstrained map (the earlier ridge towards zero) pulled a take's keys into the dense middle of
    the target cloud — averaged, less distinct frames (see ``DEFAULT_ALIGN_PRIOR``). Returns the
    mapped queries [T, K].
    """
    x = queries[fit_rows]
    if iterations <= 0 or x.shape[0] < MIN_ALIGN_FRAMES:
        return queries
    targets_unit = _unit(targets)
    dims = queries.shape[1]
    design_all = np.concatenate([queries, np.ones((queries.shape[0], 1))], axis=1)
    identity = np.concatenate([np.eye(dims), np.zeros((1, dims))])  # [K + 1, K]: the keys as they are, no offset
    regulariser = max(prior, 1e-6) * np.eye(dims + 1)
    current = queries
    for _ in range(iterations):
        cur = current[fit_rows]
        to_target = nearest_cosine(cur, targets_unit, 1)[:, 0]
        to_source = nearest_cosine(targets, _unit(cur), 1)[:, 0]
        inputs = np.concatenate([x, x[to_source]])
        outputs = np.concatenate([targets[to_target], targets])
        design = np.concatenate([inputs, np.ones((inputs.shape[0], 1))], axis=1)
        gram = design.T @ design + regulariser
        weights = np.linalg.solve(gram, design.T @ outputs + regulariser @ identity)
        current = design_all @ weights
    return current


def hann_smooth(x: np.ndarray, length: int) -> np.ndarray:
    """Smoothing over time of [T, C] with a normalised Hann window of ``length`` frames (edges repeat)."""
    if length <= 1 or x.shape[0] < 2:
        return x
    from scipy.ndimage import convolve1d

    window = np.hanning(length + 2)[1:-1]
    return convolve1d(x, window / window.sum(), axis=0, mode="nearest")


def smooth(x: np.ndarray, length: int, window: str = "hann") -> np.ndarray:
    """[T, C] smoothed over time by ``window`` ("hann" or "box") of ``length`` frames."""
    if window == "hann":
        return hann_smooth(x, length)
    if window == "box":
        return moving_average(x, length)
    raise ValueError(f"window must be 'hann' or 'box', got {window!r}")


def moving_average(x: np.ndarray, length: int) -> np.ndarray:
    """Centred moving average over time of [T, C] (edges repeat), ``length`` frames."""
    if length <= 1 or x.shape[0] < 2:
        return x
    pad = np.pad(x, ((length // 2, length - 1 - length // 2), (0, 0)), mode="edge")
    c = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), pad]), axis=0)
    return (c[length:] - c[:-length]) / length


ALIGN_TARGET_FRAMES = 12000  # the target cloud the alignment pairs against (subsampled, for speed)


def select_frames(
    source_keys: np.ndarray,
    voiced: np.ndarray,
    fit_rows: np.ndarray,
    index: TargetIndex,
    settings: SelectionSettings,
    content: ContentMatch | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Averaged target envelopes [T, D] and band aperiodicities [T, B] for source keys [T, K].

    ``fit_rows`` are the rows the alignment is fitted on (voiced speech); its map moves the voiced
    rows only. ``content``: match on envelope and content keys together (``nearest_combined``; the
    source's content keys come from its keys — aligned where voiced — at their own frame, lifter
    undone); not with ``settings.per_hop``. NoFramesError for an index
    without frames (what a voice without frames would give: no selection is possible)."""
    if index.envelope.shape[0] == 0:
        raise NoFramesError("the target index holds no frames; use the statistics method")
    if settings.iterations > 0 and fit_rows.size >= MIN_ALIGN_FRAMES and index.rows_voiced.size:
        cloud = index.keys[index.rows_voiced[:: max(1, index.rows_voiced.size // ALIGN_TARGET_FRAMES)]]
        aligned = align(source_keys, fit_rows, cloud, settings.iterations, settings.align_prior)
        # The map is fitted on voiced speech against voiced target frames: unvoiced keys (standardised
        # with their own class's statistics) keep their place. Applied to them it dragged fricatives
        # towards vowel-like frames: the /s/ of a held-out prompt came out at a spectral centroid of
        # 1.3–3.5 kHz instead of 4.3–4.6 kHz.
        source_keys = np.where(voiced[:, None], aligned, source_keys)
    query_content = None
    if content is not None and content.weight > 0 and not settings.per_hop:
        dims = index.envelope.shape[1] - 1
        query_content = content.encoder.keys(source_keys[:, :dims] / key_lifter(dims + 1))
    env = np.zeros((source_keys.shape[0], index.envelope.shape[1]))
    bap = np.zeros((source_keys.shape[0], index.bap.shape[1]))
    classes = {True: (index.unit_voiced, index.columns_voiced, index.rows_voiced),
               False: (index.unit_unvoiced, index.columns_unvoiced, index.rows_unvoiced)}
    for is_voiced, mask in ((True, voiced), (False, ~voiced)):
        if not mask.any():
            continue
        unit, columns, rows = classes[is_voiced]
        if rows.size == 0:  # a voice without frames of this class: use the other class
            unit, columns, rows = classes[index.rows_unvoiced.size == 0]
        if query_content is not None:
            found = nearest_combined(
                source_keys[mask], unit, query_content[mask], content.target[rows], content.weight, settings.k
            )
            picks = rows[found]
        elif settings.per_hop:
            columns = np.ascontiguousarray(unit.T) if columns is None else columns
            picks = rows[nearest_cosine_columns(source_keys[mask], columns, settings.k)]
        else:
            picks = rows[nearest_cosine(source_keys[mask], unit, settings.k)]
        env[mask] = index.envelope[picks].mean(axis=1)
        bap[mask] = index.bap[picks].mean(axis=1)
    return smooth(env, settings.smoothing, settings.window), smooth(bap, settings.smoothing, settings.window)
