"""Speaker-to-speaker conversion on fixed held-out clips, judged by the GE2E encoder of resemblyzer.

The clips (tests/data/voice_clips, see its README) were never used to build the shipped voices; the
speaker centroids come from the voice files. resemblyzer and pyworld are installed by scripts/setup
(`.[test,eval,voice]`), so this runs in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs pyworld (scripts/setup installs it)")

from studio.engine.audio import files  # noqa: E402
from studio.engine.convert import frameselect, speaker_similarity, voice  # noqa: E402
from studio.engine.convert.mapping import SpeakerMapping  # noqa: E402
from studio.engine.convert.pipeline import ConversionTarget, convert_audio  # noqa: E402
from studio.engine.convert.world import analyze  # noqa: E402
from studio.engine.evaluation import metrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIPS = Path(__file__).resolve().parent / "data" / "voice_clips"
VOICES = ROOT / "resources" / "voices"
RATE = 16000

# Measured on these clips (four ru, two allison; docs/voice.md has the numbers on all held-out utterances):
#   frames method (k2, Hann 13, variance 0.5, lifted keys, key prior 200, alignment held to the identity by 5000 pairs)
#                      ru→allison 0.777 to target / margin 0.187, DNSMOS 3.20;  allison→ru 0.789 / 0.216, DNSMOS 3.22
#   + content keys (the bundled content encoder, weight 0.85; the default since stop 15)
#                      ru→allison 0.806 / 0.222, DNSMOS 3.14;  allison→ru 0.792 / 0.213, DNSMOS 3.27
#   + the alignment map moving voiced keys only (stop 16)
#                      ru→allison 0.804 / 0.220, DNSMOS 3.18;  allison→ru 0.796 / 0.211, DNSMOS 3.31
#   + each frame's power kept (the source's level contour; stop 16)
#                      ru→allison 0.824 / 0.228, DNSMOS 3.23;  allison→ru 0.844 / 0.261, DNSMOS 3.29
#   statistics method  ru→allison 0.641 / margin −0.051, DNSMOS 2.60 (ru_0806, ru_0836);  allison→ru 0.708 / 0.123, DNSMOS 2.79
# The two shortest ru held-out clips (ru_0806, ru_0836) alone sit at the margin bound (0.134–0.162 with
# any alignment setting tried, ±0.02 per change, while all 32 moved together): ru_0803 and ru_0839, the
# next shortest, joined them so that the mean measures the method rather than two clips' luck.
# Both directions are held to the bounds here (0.75, +0.15, DNSMOS 3.0); on all held-out
# utterances both meet them too since stop 16 (allison→ru 0.765 / +0.192 / 3.06 on all 29 prompts).
BOUNDS = {("allison", "ru"): (0.75, 0.15), ("ru", "allison"): (0.75, 0.15)}
MIN_DNSMOS = 3.0
MAX_LF0_ERROR = 0.08  # mean ln F0 of the output vs the target voice's (0.08 ≈ 1.4 semitones)


@pytest.fixture(scope="module")
def voices() -> dict[str, voice.Voice]:
    return {name: voice.load_voice(VOICES / name) for name in ("ru", "allison")}


CLIP_COUNTS = {"ru": 4, "allison": 2}


def clips_of(speaker: str) -> list[np.ndarray]:
    out = []
    for path in sorted(CLIPS.glob(f"{speaker}-*.flac")):
        audio, rate = files.load(path, sample_rate=RATE)
        out.append(audio.mean(axis=1) if audio.ndim == 2 else audio)
    assert len(out) == CLIP_COUNTS[speaker], f"expected {CLIP_COUNTS[speaker]} {speaker} clips in {CLIPS}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("source", "target"), [("ru", "allison"), ("allison", "ru")])
def test_held_out_speech_is_converted_to_the_target_speaker(voices, source, target):
    conversion = ConversionTarget(voice=voices[target], source=voices[source])
    sims_target, sims_source, lf0, quality = [], [], [], []
    for audio in clips_of(source):
        result = convert_audio(audio, RATE, conversion)
        assert result.sample_rate == RATE and result.audio.shape[0] == audio.shape[0]
        assert np.all(np.isfinite(result.audio))
        quality.append(metrics.dnsmos_ovrl(result.audio, RATE))
        e = speaker_similarity.embed(result.audio, RATE)
        sims_target.append(speaker_similarity.similarity(e, voices[target].speaker_embedding))
        sims_source.append(speaker_similarity.similarity(e, voices[source].speaker_embedding))
        f0 = analyze(result.audio, RATE).f0
        lf0.append(float(np.mean(np.log(f0[f0 > 0]))))
    sim_t, sim_s = float(np.mean(sims_target)), float(np.mean(sims_source))
    min_similarity, min_margin = BOUNDS[(source, target)]
    assert sim_t >= min_similarity, f"{source}→{target}: similarity to the target {sim_t:.3f}"
    assert sim_t - sim_s >= min_margin, f"{source}→{target}: {sim_t:.3f} to target vs {sim_s:.3f} to source"
    assert abs(float(np.mean(lf0)) - voices[target].lf0_mean) <= MAX_LF0_ERROR
    assert float(np.mean(quality)) >= MIN_DNSMOS, f"{source}→{target}: DNSMOS OVRL {np.mean(quality):.2f}"


def test_a_short_take_converted_to_a_voice_carries_a_note(voices):
    """Takes under SHORT_TAKE_SECONDS convert to another speaker less convincingly (measured): the
    result says so; a longer take, or a pitch shift of a short one, carries no note."""
    from studio.engine.convert.pipeline import SHORT_TAKE_SECONDS
    from studio.engine.convert.transforms import VoiceTransform

    audio = clips_of("ru")[0]
    short = audio[int(1.0 * RATE) : int(1.9 * RATE)]
    to_allison = ConversionTarget(voice=voices["allison"], source=voices["ru"])
    result = convert_audio(short, RATE, to_allison)
    assert len(result.notes) == 1 and "short take (0.9 s)" in result.notes[0]
    assert short.shape[0] / RATE < SHORT_TAKE_SECONDS
    assert convert_audio(audio[: 3 * RATE], RATE, to_allison).notes == ()
    assert convert_audio(short, RATE, ConversionTarget(transform=VoiceTransform(pitch_semitones=2.0))).notes == ()


def test_unconverted_speech_is_far_from_the_other_speaker(voices):
    """The judge separates the two speakers at all (what the conversion test relies on)."""
    for source, other in (("ru", "allison"), ("allison", "ru")):
        for audio in clips_of(source):
            e = speaker_similarity.embed(audio, RATE)
            own = speaker_similarity.similarity(e, voices[source].speaker_embedding)
            foreign = speaker_similarity.similarity(e, voices[other].speaker_embedding)
            assert own >= 0.75 and foreign <= 0.62 and own - foreign >= 0.25, (source, own, foreign)


def test_shipped_voices_store_frames_compactly(voices):
    for name, v in voices.items():
        assert v.has_frames, f"{name} has no frames for kNN selection: rebuild it (python -m studio.engine.convert.corpora)"
        assert v.arrays["frames_env"].dtype == np.int8 and v.arrays["frames_env"].shape[1] == v.envelope_dims
        voiced = v.arrays["frames_voiced"].astype(bool)
        assert 0.4 < voiced.mean() < 0.95  # both voicing classes are there
        assert (VOICES / f"{name}.voice.safetensors").stat().st_size < 2_000_000
        env = voice.stored_envelopes(v)
        # The stored frames agree with the voice's own statistics (quantisation did not distort them).
        assert np.allclose(env[voiced].mean(axis=0)[1:6], v.arrays["env_mean_voiced"][1:6], atol=0.35)


def test_the_alignment_map_is_held_to_the_identity_by_its_prior():
    """Pure logic: a very strong prior leaves the keys as they are; a weaker one lets the map follow
    a target cloud that is a scaled, shifted copy of the queries further."""
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((300, 6))
    targets = 1.5 * queries[rng.permutation(300)] + 0.7
    rows = np.arange(300)
    held = frameselect.align(queries, rows, targets, iterations=3, prior=1e9)
    np.testing.assert_allclose(held, queries, atol=1e-3)
    moved = {p: float(np.abs(frameselect.align(queries, rows, targets, 3, prior=p) - queries).mean()) for p in (10.0, 1000.0)}
    assert moved[10.0] > moved[1000.0] > 1e-3


def test_warp_estimate_points_from_the_lower_to_the_higher_vocal_tract(voices):
    ru, allison = (voices[n].arrays["env_mean_voiced"].astype(np.float64) for n in ("ru", "allison"))
    up = frameselect.estimate_warp(ru, allison, RATE, 1024)
    down = frameselect.estimate_warp(allison, ru, RATE, 1024)
    assert 1.05 <= up <= frameselect.WARP_RANGE[1] and frameselect.WARP_RANGE[0] <= down <= 0.95
    assert frameselect.estimate_warp(ru, ru, RATE, 1024) == pytest.approx(1.0, abs=0.02)


def test_voice_with_frames_round_trips_and_damaged_frames_are_refused(tmp_path):
    built = voice.build_voice("ru-test", sorted(CLIPS.glob("ru-*.flac")), description="four held-out clips")
    assert built.has_frames and built.provenance["stored_frames"] == built.arrays["frames_env"].shape[0]
    path = voice.save_voice(built, tmp_path / "ru-test")
    loaded = voice.load_voice(path)
    assert loaded.has_frames and json.loads(path.read_text())["format_version"] == voice.FORMAT_VERSION
    for key in voice.FRAME_ARRAYS:
        assert loaded.arrays[key].dtype == built.arrays[key].dtype
        assert np.array_equal(loaded.arrays[key], built.arrays[key])
    # A frames array of the wrong length is refused with a reason.
    from safetensors.numpy import save

    arrays = dict(loaded.arrays)
    arrays["frames_voiced"] = arrays["frames_voiced"][:-3]
    (tmp_path / "ru-test.voice.safetensors").write_bytes(save(arrays))
    with pytest.raises(voice.VoiceError, match="frame array shapes"):
        voice.load_voice(tmp_path / "ru-test")


def _without_frames(v: voice.Voice, empty_store: bool) -> voice.Voice:
    """A copy of ``v`` as a format-1 voice (no frame arrays) or with an empty frame store (0 frames)."""
    if empty_store:
        arrays = {k: (a[:0] if k in ("frames_env", "frames_bap", "frames_voiced", "frames_break") else a) for k, a in v.arrays.items()}
    else:
        arrays = {k: a for k, a in v.arrays.items() if k not in voice.FRAME_ARRAYS}
    return voice.Voice(
        name=f"{v.name}-noframes", sample_rate=v.sample_rate, frame_period_ms=v.frame_period_ms,
        lf0_mean=v.lf0_mean, lf0_std=v.lf0_std, arrays=arrays,
    )


@pytest.mark.parametrize("empty_store", [False, True], ids=["format-1", "empty-store"])
def test_voices_without_frames_convert_by_statistics(voices, empty_store):
    """A voice without frames (format 1, or a store of 0 frames) falls back cleanly to the statistics
    method: finite output, identical to asking for that method, on the target's pitch."""
    allison = voices["allison"]
    old = _without_frames(allison, empty_store)
    assert not old.has_frames
    audio = clips_of("ru")[0][: RATE * 2]
    by_default = convert_audio(audio, RATE, ConversionTarget(voice=old, mapping=SpeakerMapping()))
    by_stats = convert_audio(audio, RATE, ConversionTarget(voice=old, mapping=SpeakerMapping(method="statistics")))
    assert np.all(np.isfinite(by_default.audio)) and np.sqrt(np.mean(by_default.audio**2)) > 1e-3
    assert np.array_equal(by_default.audio, by_stats.audio)
    f0 = analyze(by_default.audio, RATE).f0
    assert abs(float(np.mean(np.log(f0[f0 > 0]))) - allison.lf0_mean) <= MAX_LF0_ERROR
    # Asking frame selection itself for such a voice is refused with a reason, not answered with NaN.
    with pytest.raises(frameselect.NoFramesError, match="no frames"):
        frameselect.target_index(old, 3)
    with pytest.raises(ValueError, match="method"):
        SpeakerMapping(method="magic")


def test_empty_target_index_is_refused_not_nan():
    empty = frameselect.TargetIndex(
        envelope=np.zeros((0, 40)), bap=np.zeros((0, 1)), voiced=np.zeros(0, bool), keys=np.zeros((0, 39)),
        unit_voiced=np.zeros((0, 39), np.float32), unit_unvoiced=np.zeros((0, 39), np.float32),
        rows_voiced=np.zeros(0, np.int64), rows_unvoiced=np.zeros(0, np.int64),
    )
    keys = np.random.default_rng(0).normal(size=(50, 39))
    with pytest.raises(frameselect.NoFramesError):
        frameselect.select_frames(keys, np.ones(50, bool), np.arange(50), empty, frameselect.SelectionSettings())


def test_hann_smoothing_keeps_levels_and_removes_frame_jitter():
    t = np.arange(200)
    slow = np.sin(2 * np.pi * t / 100.0)[:, None]  # a 0.5 s movement at 5 ms frames
    jitter = 0.5 * (-1.0) ** t[:, None]  # frame-to-frame jumps
    out = frameselect.smooth(np.hstack([slow + jitter, np.full((200, 1), 3.0)]), 13)
    assert np.allclose(out[:, 1], 3.0)  # a constant stays (edges repeat, weights sum to 1)
    assert np.max(np.abs(out[20:-20, 0] - slow[20:-20, 0])) < 0.1  # jitter gone, movement kept
    assert np.array_equal(frameselect.smooth(slow, 1), slow)
    box = frameselect.smooth(slow + jitter, 3, "box")
    assert np.max(np.abs(box[20:-20, 0] - slow[20:-20, 0])) > 0.1  # a 3-frame box leaves jitter in
    with pytest.raises(ValueError, match="window"):
        frameselect.smooth(slow, 5, "gauss")


def test_variance_restore_moves_the_spread_towards_the_target(voices):
    from studio.engine.convert.mapping import restore_variance

    target = voices["ru"]
    rng = np.random.default_rng(1)
    dims = target.envelope_dims
    env = rng.normal(size=(400, dims)) * 0.01 + target.arrays["env_mean_voiced"]  # flattened: tiny spread
    voiced = np.ones(400, bool)
    half = restore_variance(env, voiced, target, 0.5)
    full = restore_variance(env, voiced, target, 1.0)
    want = target.arrays["env_std_voiced"][1:]
    assert np.allclose(full[:, 1:].std(axis=0), want, rtol=1e-6)
    assert np.allclose(half[:, 1:].std(axis=0), np.sqrt(env[:, 1:].std(axis=0) * want), rtol=1e-6)  # geometric middle
    assert np.allclose(half[:, 1:].mean(axis=0), env[:, 1:].mean(axis=0)) and np.array_equal(half[:, 0], env[:, 0])
    short = restore_variance(env[:10], voiced[:10], target, 1.0)  # too few frames: left alone
    assert np.array_equal(short, env[:10])


def test_key_lifter_weights_coarse_shape_over_fine_detail():
    w = frameselect.key_lifter(40)
    assert w.shape == (39,) and w[0] == 1.0 and w[-1] == pytest.approx(frameselect.KEY_LIFTER_END)
    assert np.all(np.diff(w) < 0)
    coded = np.random.default_rng(2).normal(size=(30, 40))
    ones, zeros = np.ones(40), np.zeros(40)
    z = frameselect.standardise(coded, np.ones(30, bool), zeros, ones, zeros, ones)
    assert np.allclose(z, coded[:, 1:] * w)
    assert np.allclose(frameselect.standardise(coded, np.ones(30, bool), zeros, ones, zeros, ones, lifter=False), coded[:, 1:])


@pytest.mark.parametrize(("source", "target"), [("ru", "allison"), ("allison", "ru")])
def test_live_blocks_convert_to_the_target_register_and_lean_to_the_target(voices, source, target):
    """The live path (30 ms hops, short-block selection settings) still converts: finite audio on the
    target's pitch register that the judge places nearer the target than the source
    (measured: ru→allison 0.670 vs 0.640, allison→ru 0.793 vs 0.604)."""
    from studio.engine.convert import streaming

    audio = clips_of(source)[0]
    block = streaming.BlockConverter(ConversionTarget(voice=voices[target], source=voices[source]), gate_db=None)
    out = block.process_all(audio.astype(np.float64))
    assert out.shape == audio.shape and np.all(np.isfinite(out)) and np.sqrt(np.mean(out**2)) > 1e-3
    f0 = analyze(out, RATE).f0
    assert abs(float(np.mean(np.log(f0[f0 > 0]))) - voices[target].lf0_mean) <= 0.1
    e = speaker_similarity.embed(out, RATE)
    assert speaker_similarity.similarity(e, voices[target].speaker_embedding) > speaker_similarity.similarity(
        e, voices[source].speaker_embedding
    )


def test_short_takes_lean_on_the_source_voice_register(voices):
    """The take's mean ln F0 is blended with the source voice's, weighted n / (n + prior) for n voiced
    speech frames: no prior maps from the take's own register, a huge one from the voice's, and a
    longer take of the same speech keeps more of its own."""
    from studio.engine.convert.mapping import convert_to_voice
    from studio.engine.convert.voice import speech_mask
    from studio.engine.convert.world import code_envelope

    source, target = voices["allison"], voices["ru"]
    audio = clips_of("allison")[0].astype(np.float64)

    def output_mean(seconds: float, prior: float) -> tuple[float, float, int]:
        f = analyze(audio[: int(seconds * RATE)], RATE)
        sv = f.voiced & speech_mask(code_envelope(f.sp, RATE, target.envelope_dims))
        mapping = SpeakerMapping(method="statistics", pitch_prior_frames=prior)
        out = convert_to_voice(f, target, mapping, source)
        own = float(np.log(f.f0[sv]).mean())
        # Output register minus the target's, in source-spread units, is (own − mean used) · ratio of spreads.
        used = own - (float(np.log(out.f0[sv]).mean()) - target.lf0_mean) * source.lf0_std / target.lf0_std
        return used, own, int(sv.sum())

    used, own, n = output_mean(3.0, 0.0)
    assert n >= 40 and used == pytest.approx(own, abs=1e-9)
    used, own, _ = output_mean(3.0, 1e12)
    assert used == pytest.approx(source.lf0_mean, abs=1e-6)
    used, own, n = output_mean(3.0, 50.0)
    weight = n / (n + 50.0)
    assert used == pytest.approx(weight * own + (1 - weight) * source.lf0_mean, abs=1e-9)
    short_used, short_own, short_n = output_mean(0.8, 50.0)
    assert 40 <= short_n < n  # the short take leans further towards the voice
    assert abs(short_used - short_own) / abs(source.lf0_mean - short_own) > abs(used - own) / abs(source.lf0_mean - own)
    with pytest.raises(ValueError, match="pitch_prior_frames"):
        SpeakerMapping(pitch_prior_frames=-1)


def test_key_statistics_blend_by_frame_count():
    """Pure arithmetic: weight n / (n + prior) per voicing class; prior 0 keeps the take's own."""
    from studio.engine.convert.mapping import blend_key_statistics

    own = tuple(np.full(3, v) for v in (1.0, 2.0, 3.0, 4.0))
    prior = tuple(np.zeros(3) for _ in range(4))
    assert all(np.array_equal(a, b) for a, b in zip(blend_key_statistics(own, prior, 100, 50, 0.0), own, strict=True))
    blended = blend_key_statistics(own, prior, 200, 50, 200.0)
    np.testing.assert_allclose([b[0] for b in blended], [0.5, 1.0, 3.0 * 0.2, 4.0 * 0.2])


def test_a_short_takes_keys_lean_on_the_source_voice(voices):
    """The key prior changes what a short take selects (and a huge prior equals the source statistics
    alone); with no prior the take standardises its keys with its own statistics, as before."""
    from studio.engine.convert.mapping import convert_to_voice

    source, target = voices["allison"], voices["ru"]
    f = analyze(clips_of("allison")[0][: RATE * 2].astype(np.float64), RATE)
    outputs = {prior: convert_to_voice(f, target, SpeakerMapping(key_prior_frames=prior), source).sp
               for prior in (0.0, 200.0, 1e12)}
    assert not np.allclose(outputs[0.0], outputs[200.0])
    assert not np.allclose(outputs[200.0], outputs[1e12])
    with pytest.raises(ValueError, match="key_prior_frames"):
        SpeakerMapping(key_prior_frames=-1)


def test_eval_convert_reports_the_natural_input_and_splits_by_take_length(tmp_path):
    """`studio eval-convert --from allison --to ru FILES --json` on a real long prompt and a 0.9 s cut
    of it: every clip carries the unconverted input's own-speaker similarity and DNSMOS (the scale),
    and the means are split at SHORT_TAKE_SECONDS into groups whose numbers are those of their clips."""
    import subprocess
    import sys

    from studio.engine.convert.pipeline import SHORT_TAKE_SECONDS

    long_clip = sorted(CLIPS.glob("allison-*.flac"))[0]
    audio, rate = files.load(long_clip, sample_rate=RATE)
    short_clip = tmp_path / "allison-cut.wav"
    files.save(short_clip, audio[int(0.3 * RATE) : int(1.2 * RATE)], RATE)
    run = subprocess.run(
        [sys.executable, "-m", "studio", "eval-convert", "--from", "allison", "--to", "ru",
         str(long_clip), str(short_clip), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: a bound missed (the 0.9 s cut may)
    report = json.loads(run.stdout)
    clips = {c["clip"]: c for c in report["clips"]}
    assert set(clips) == {long_clip.name, short_clip.name}
    for c in clips.values():
        # Natural Allison against her own centroid: the judge's scale for these very clips.
        assert c["input_similarity_own"] >= 0.7 and c["input_similarity_own"] > c["similarity_source"]
        assert 1.0 <= c["input_dnsmos_ovrl"] <= 5.0
    groups = report["extra"]["by_length"]
    short_name, long_name = f"under_{SHORT_TAKE_SECONDS:g}_s", f"{SHORT_TAKE_SECONDS:g}_s_and_longer"
    assert set(groups) == {short_name, long_name}
    for name, clip in ((short_name, clips[short_clip.name]), (long_name, clips[long_clip.name])):
        g = groups[name]
        assert g["clips"] == 1
        assert g["similarity_target"] == pytest.approx(clip["similarity_target"])
        assert g["margin"] == pytest.approx(clip["similarity_target"] - clip["similarity_source"])
        assert g["input_dnsmos_ovrl"] == pytest.approx(clip["input_dnsmos_ovrl"])
    m = report["means"]
    assert m["input_similarity_own"] == pytest.approx(np.mean([c["input_similarity_own"] for c in clips.values()]))


def test_the_alignment_moves_voiced_keys_only_so_fricatives_stay_fricatives(voices):
    """The map is fitted on voiced frames against voiced target frames; the unvoiced frames of a real
    take must be matched on their own keys: with or without alignment, the same target frames."""
    from studio.engine.convert.world import code_envelope

    target = voices["ru"]
    features = analyze(clips_of("allison")[0], RATE)
    coded = code_envelope(features.sp, RATE, target.envelope_dims)
    voiced = features.voiced
    stats = [f(coded[rows], axis=0) for rows in (voiced, ~voiced) for f in (np.mean, np.std)]
    keys = frameselect.stack_context(frameselect.standardise(coded, voiced, *stats), None, 3)
    index = frameselect.target_index(target, 3)
    fit_rows = np.flatnonzero(voiced)
    selected = {
        passes: frameselect.select_frames(
            keys, voiced, fit_rows, index, frameselect.SelectionSettings(k=2, context=3, iterations=passes, smoothing=1)
        )[0]
        for passes in (0, 3)
    }
    assert voiced.sum() >= 40 and (~voiced).sum() >= 20
    np.testing.assert_array_equal(selected[3][~voiced], selected[0][~voiced])
    assert not np.allclose(selected[3][voiced], selected[0][voiced]), "the alignment no longer moves voiced keys"


def frame_levels_db(audio: np.ndarray, frame: int = 320) -> np.ndarray:
    """Level of each 20 ms frame at 16 kHz, dB (float [frames])."""
    frames = audio[: audio.size // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("source", "target"), [("ru", "allison"), ("allison", "ru")])
def test_converted_speech_keeps_the_source_level_contour(voices, source, target):
    """Each output frame gets its source frame's power. Measured on these clips: the 20 ms levels of
    the output follow the input's within 0.7–1.1 dB on average (p90 1.8–2.4 dB) over the frames within
    30 dB of the loudest; keeping only the mel-cepstral level (coefficient 0), as before stop 16, left
    3.3–4.5 dB (p90 7–9 dB): vowels came out quieter against fricatives than they were."""
    conversion = ConversionTarget(voice=voices[target], source=voices[source])
    for audio in clips_of(source):
        result = convert_audio(audio, RATE, conversion)
        level_in, level_out = frame_levels_db(audio), frame_levels_db(result.audio)
        speech = level_in > level_in.max() - 30.0
        difference = (level_out - level_in)[speech]
        difference -= np.median(difference)  # the overall gain is the loudness match's business
        assert float(np.mean(np.abs(difference))) < 1.8, f"{source}→{target}: level contour off by {np.abs(difference).mean():.1f} dB"


def test_the_frames_method_gives_every_frame_its_source_frame_power(voices):
    """Pure arithmetic on real tracks: after selection the envelope of each frame carries the power
    (sum over bins) of the source's frame, silence included."""
    from studio.engine.convert.mapping import convert_to_voice

    features = analyze(clips_of("allison")[1], RATE)
    converted = convert_to_voice(features, voices["ru"], SpeakerMapping(), voices["allison"])
    np.testing.assert_allclose(converted.sp.sum(axis=1), features.sp.sum(axis=1), rtol=1e-9)
    assert not np.allclose(converted.sp, features.sp), "the envelopes were not converted at all"
