"""The live path's per-hop matching (issue 7) gives the frames the batched computation gives.

Short blocks (the live converter's hops) are matched by ``frameselect.nearest_cosine_columns`` against
the voice's precomputed contiguous key columns, and their warp comes from a cached
``frameselect.WarpEstimator``. Here real hops (the held-out clips of tests/data/voice_clips through a
real BlockConverter with the shipped voices) are converted both ways: the picks, the warp and the
converted tracks must be the same as with ``nearest_cosine`` / ``estimate_warp``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs pyworld (scripts/setup installs it)")

from studio.engine.audio import files  # noqa: E402
from studio.engine.convert import frameselect, mapping, streaming, voice  # noqa: E402
from studio.engine.convert.pipeline import ConversionTarget  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "voice_clips"
RATE = 16000
SECONDS = 1.5  # of each clip: ~50 hops of 30 ms per direction


@pytest.fixture(scope="module")
def voices() -> dict[str, voice.Voice]:
    return {name: voice.load_voice(ROOT / "resources" / "voices" / name) for name in ("ru", "allison")}


def live_hops(voices, source: str, target: str) -> list[tuple]:
    """(features, voice, mapping, running stats) of every hop a real BlockConverter converts on the
    first SECONDS of a held-out ``source`` clip, in the order the converter made them."""
    audio, _ = files.load(sorted(CLIPS.glob(f"{source}-*.flac"))[0], sample_rate=RATE)
    audio = (audio.mean(axis=1) if audio.ndim == 2 else audio)[: int(SECONDS * RATE)].astype(np.float64)
    hops: list[tuple] = []
    original = streaming.convert_to_voice

    def recording(features, target_voice, speaker_mapping, stats):
        hops.append((features, target_voice, speaker_mapping, stats))
        return original(features, target_voice, speaker_mapping, stats)

    block = streaming.BlockConverter(ConversionTarget(voice=voices[target], source=voices[source]), hop_ms=30.0, gate_db=None)
    streaming.convert_to_voice = recording
    try:
        block.process_all(audio)
    finally:
        streaming.convert_to_voice = original
    assert len(hops) >= 40 and all(h[0].frames < mapping.SHORT_BLOCK_FRAMES for h in hops)
    return hops


@pytest.mark.parametrize(("source", "target"), [("ru", "allison"), ("allison", "ru")])
def test_live_hops_select_the_same_frames_as_the_batched_computation(voices, source, target, monkeypatch):
    hops = live_hops(voices, source, target)
    fast = [mapping.convert_to_voice(*hop) for hop in hops]

    # The same hops through the batched matcher and the per-call warp estimate (the computation before).
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    batched_select = frameselect.select_frames

    def batched(keys, voiced, fit_rows, index, settings, content=None):
        assert settings.per_hop, "short blocks must use the per-hop matcher"
        assert content is None, "live hops match on envelope keys alone (no context for the content encoder)"
        seen.append((keys, voiced))
        return batched_select(keys, voiced, fit_rows, index, dataclasses.replace(settings, per_hop=False))

    class PerCallWarp:
        def __init__(self, target_voice, sr, fft):
            self.args = (target_voice.arrays["env_mean_voiced"].astype(np.float64), sr, fft)

        def estimate(self, source_mean):
            return frameselect.estimate_warp(source_mean, *self.args)

    monkeypatch.setattr(frameselect, "select_frames", batched)
    monkeypatch.setattr(frameselect, "warp_estimator", PerCallWarp)
    reference = [mapping.convert_to_voice(*hop) for hop in hops]
    monkeypatch.undo()

    assert len(seen) == len(hops)
    for got, want in zip(fast, reference, strict=True):
        for track in ("f0", "sp", "ap"):
            assert np.allclose(getattr(got, track), getattr(want, track), rtol=1e-9, atol=1e-12), track
    # The picks themselves, per voicing class (same sets; the order within the k may differ).
    index = frameselect.target_index(voices[target], 0)
    k = max(mapping.DEFAULT_NEIGHBOURS, mapping.SHORT_BLOCK_NEIGHBOURS)
    compared = 0
    for keys, voiced in seen:
        for mask, unit, columns in ((voiced, index.unit_voiced, index.columns_voiced), (~voiced, index.unit_unvoiced, index.columns_unvoiced)):
            if mask.any():
                want = np.sort(frameselect.nearest_cosine(keys[mask], unit, k), axis=1)
                got = np.sort(frameselect.nearest_cosine_columns(keys[mask], columns, k), axis=1)
                assert np.array_equal(got, want)
                compared += int(mask.sum())
    assert compared >= 6 * len(seen)


def test_warp_estimator_gives_the_per_call_estimate(voices):
    rng = np.random.default_rng(3)
    ru, allison = (voices[n].arrays["env_mean_voiced"].astype(np.float64) for n in ("ru", "allison"))
    for target_mean, source_mean in ((allison, ru), (ru, allison), (ru, ru)):
        estimator = frameselect.WarpEstimator(target_mean, RATE, 1024)
        # The voice's mean and perturbed ones (the running statistics drift hop by hop).
        for shift in [np.zeros_like(source_mean)] + [rng.normal(scale=0.05, size=source_mean.shape) for _ in range(20)]:
            assert estimator.estimate(source_mean + shift) == frameselect.estimate_warp(source_mean + shift, target_mean, RATE, 1024)
    cached = frameselect.warp_estimator(voices["allison"], RATE, 1024)
    assert frameselect.warp_estimator(voices["allison"], RATE, 1024) is cached
    assert cached.estimate(ru) > 1.05  # ru's lower vocal tract is stretched up towards allison's


def test_per_hop_matcher_equals_the_batched_one_for_any_hop_size():
    rng = np.random.default_rng(0)
    store = rng.normal(size=(5000, 39))
    unit = frameselect._unit(store).astype(np.float32)
    columns = np.ascontiguousarray(unit.T)
    for frames in (1, 5, 7, 39):
        queries = rng.normal(size=(frames, 39))
        for k in (1, 4):
            want = np.sort(frameselect.nearest_cosine(queries, unit, k), axis=1)
            assert np.array_equal(np.sort(frameselect.nearest_cosine_columns(queries, columns, k), axis=1), want)
    # A store no larger than k: every key is a pick.
    assert np.array_equal(frameselect.nearest_cosine_columns(rng.normal(size=(3, 39)), columns[:, :2], 4), [[0, 1]] * 3)


def test_per_hop_selection_works_on_an_index_without_precomputed_columns(voices):
    index = frameselect.target_index(voices["allison"], 0)
    bare = dataclasses.replace(index, columns_voiced=None, columns_unvoiced=None)
    keys = np.random.default_rng(1).normal(size=(7, index.keys.shape[1]))
    voiced = np.array([True, True, False, True, False, True, True])
    settings = frameselect.SelectionSettings(k=4, context=0, iterations=0, smoothing=3, window="box", per_hop=True)
    env, bap = frameselect.select_frames(keys, voiced, np.flatnonzero(voiced), bare, settings)
    env_ref, bap_ref = frameselect.select_frames(keys, voiced, np.flatnonzero(voiced), index, dataclasses.replace(settings, per_hop=False))
    assert np.allclose(env, env_ref) and np.allclose(bap, bap_ref)


def test_block_converter_builds_the_voice_index_before_the_first_hop():
    """The per-voice precomputation happens at converter start, not in the first (live) hop."""
    target = voice.load_voice(ROOT / "resources" / "voices" / "allison")
    assert not target.cache
    block = streaming.BlockConverter(ConversionTarget(voice=target), hop_ms=20.0, gate_db=None)
    kinds = {type(v) for v in target.cache.values()}
    assert kinds == {frameselect.TargetIndex, frameselect.WarpEstimator}
    index = frameselect.target_index(target, 0)
    assert index.columns_voiced.flags["C_CONTIGUOUS"] and index.columns_voiced.dtype == np.float32
    assert index.columns_voiced.shape == index.unit_voiced.shape[::-1]
    cached = dict(target.cache)
    block.process(np.zeros(block.hop))
    block.process(0.1 * np.sin(np.arange(block.hop) * 2 * np.pi * 150 / RATE))
    assert target.cache.keys() == cached.keys() and all(target.cache[k] is cached[k] for k in cached)  # nothing rebuilt
