"""WaveRNN: configuration, causality, fast path == plain path == sequence path, folding, seeds, cancel,
training on real speech, and the base streaming interface. Tiny models; the whole file runs in seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.cancel_timing import cancel_mid_run
from support.crop_training import adam_steps_on_random_crops, evenly_spaced_crops
from support.tiny_training import espeak_word

from studio.engine.audio.features import FeatureProfile, MelFrontEnd
from studio.engine.models import wavernn_fold as fold
from studio.engine.models.base import CancelToken, GenerateRequest, build_model, get_family
from studio.engine.models.wavernn import WaveRNN, WaveRNNConfig, sample_classes, suggest_upsample_scales

PROFILE = FeatureProfile(
    name="tiny", sample_rate=16000, n_fft=64, hop_length=16, win_length=64, n_mels=8, fmin=0.0, fmax=8000.0
)
TINY = dict(rnn_dims=32, fc_dims=24, n_mels=8, upsample_scales=(4, 4), res_blocks=1, compute_dims=16,
            res_out_dims=16, pad=2)
MODES = [("mulaw", 9), ("dual", 16)]


def tiny_model(mode: str = "mulaw", bits: int = 9, seed: int = 0, **overrides) -> WaveRNN:
    torch.manual_seed(seed)
    cfg = WaveRNNConfig(mode=mode, bits=bits, **{**TINY, **overrides})
    model = WaveRNN(cfg, PROFILE)
    # non-trivial batch-norm statistics, so the conditioning path is really exercised in eval mode
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


def speech_like(n: int, seed: int = 0) -> torch.Tensor:
    """A deterministic harmonic signal with a moving pitch and a little noise, float32 [n] in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / PROFILE.sample_rate
    f0 = 180 + 40 * torch.sin(2 * math.pi * 3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / PROFILE.sample_rate
    x = sum(0.3 / k * torch.sin(k * phase) for k in range(1, 6))
    return (x + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)).float()


# -- configuration ------------------------------------------------------------------------------------
def test_config_validation_names_the_values():
    with pytest.raises(ValueError, match="mode='bogus'"):
        WaveRNNConfig(mode="bogus")
    with pytest.raises(ValueError, match="bits=9"):
        WaveRNNConfig(mode="dual", bits=9)
    with pytest.raises(ValueError, match="bits=17"):
        WaveRNNConfig(bits=17)
    with pytest.raises(ValueError, match="30"):
        WaveRNNConfig(res_out_dims=30)
    with pytest.raises(ValueError, match="rnn_dims must be even, got 33"):
        WaveRNNConfig(mode="dual", bits=16, rnn_dims=33)
    with pytest.raises(ValueError, match=r"multiply to 32.*hop_length=16"):
        WaveRNN(WaveRNNConfig(**{**TINY, "upsample_scales": (4, 8)}), PROFILE)
    with pytest.raises(ValueError, match="n_mels=10"):
        WaveRNN(WaveRNNConfig(**{**TINY, "n_mels": 10}), PROFILE)
    assert suggest_upsample_scales(275) == (5, 5, 11)
    assert math.prod(suggest_upsample_scales(200)) == 200


def test_registered_family_builds_from_a_json_like_dict():
    fam = get_family("wavernn")
    assert fam.model_class is WaveRNN and fam.config_class is WaveRNNConfig
    model = build_model("wavernn", {**TINY, "upsample_scales": [4, 4]}, PROFILE)
    assert model.config.upsample_scales == (4, 4)
    card = model.card()
    assert card.family == "wavernn" and card.receptive_field == 1 and card.conditioning == "mel"
    assert card.parameters == sum(p.numel() for p in model.parameters())
    # the dual mode's mask is derived, not stored: checkpoints hold only weights
    dual = tiny_model("dual", 16)
    assert "ih_mask" not in dual.state_dict()


# -- causality -----------------------------------------------------------------------------------------
def test_mulaw_logits_depend_only_on_earlier_samples():
    model = tiny_model()
    audio = speech_like(160).unsqueeze(0)
    mel = torch.randn(1, 8, 10)
    s = 77
    changed = audio.clone()
    changed[0, s] = -audio[0, s] + 0.3
    with torch.no_grad():
        a, b = model.teacher_forced_logits(audio, mel), model.teacher_forced_logits(changed, mel)
    assert torch.equal(a[:, : s + 1], b[:, : s + 1])
    assert (a[:, s + 1] - b[:, s + 1]).abs().max() > 1e-4


def test_dual_coarse_is_blind_to_the_current_coarse_value_and_fine_sees_it():
    model = tiny_model("dual", 16)
    audio = speech_like(160).unsqueeze(0)
    mel = torch.randn(1, 8, 10)
    s = 60
    q = model.encode(audio)
    with torch.no_grad():
        base = model.teacher_forced_logits(audio, mel)
        # change only the coarse byte of sample s
        qc = q.clone()
        qc[0, s] = ((q[0, s] // 256 + 40) % 256) * 256 + q[0, s] % 256
        coarse_changed = model.teacher_forced_logits(model.decode(qc), mel)
        # change only the fine byte of sample s
        qf = q.clone()
        qf[0, s] = (q[0, s] // 256) * 256 + (q[0, s] % 256 + 100) % 256
        fine_changed = model.teacher_forced_logits(model.decode(qf), mel)
    assert torch.equal(model.encode(model.decode(qc)), qc)  # the 16-bit round trip is exact
    assert torch.equal(coarse_changed[:, : s + 1, 0], base[:, : s + 1, 0])  # coarse logits at s: blind
    assert torch.equal(coarse_changed[:, :s, 1], base[:, :s, 1])
    assert (coarse_changed[:, s, 1] - base[:, s, 1]).abs().max() > 1e-4  # fine logits at s see c_s
    assert torch.equal(fine_changed[:, : s + 1], base[:, : s + 1])  # f_s affects only later steps
    assert (fine_changed[:, s + 1] - base[:, s + 1]).abs().max() > 1e-4


# -- fast step path == sequence path == plain path -------------------------------------------------------
@pytest.mark.parametrize(("mode", "bits"), MODES)
def test_fast_step_path_matches_teacher_forced_sequence(mode, bits):
    model = tiny_model(mode, bits)
    n = 320
    audio = speech_like(n, seed=1).unsqueeze(0)
    mel = torch.randn(1, 8, n // 16)
    with torch.inference_mode():
        seq = model.teacher_forced_logits(audio, mel)[0]
        target = model.encode(audio)[0]
        forced = target if mode == "mulaw" else torch.stack([target // 256, target % 256], dim=-1)
        step_logits = torch.zeros_like(seq)
        classes = torch.zeros(1, n, dtype=torch.long)

        def choose(logits, t, part):
            if mode == "mulaw":
                step_logits[t] = logits[0]
                return forced[t : t + 1]
            step_logits[t, part] = logits[0]
            return forced[t : t + 1, part]

        cond = model.conditioning(mel, n)
        steps = list(model.stepper().run(cond, choose, classes, model.start_class, yield_every=100))
    assert steps == [100, 200, 300, 320]
    assert torch.equal(classes[0], target)
    assert (step_logits - seq).abs().max() < 1e-5
    assert seq.abs().max() > 0.05  # the comparison is not between two tiny numbers


@pytest.mark.parametrize(("mode", "bits"), MODES)
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_fast_generation_equals_plain_generation(mode, bits, temperature):
    model = tiny_model(mode, bits, seed=2)
    mel = torch.randn(1, 8, 20)
    plain = model.generate_plain(mel, 300, torch.Generator().manual_seed(5), temperature)
    req = GenerateRequest(mel=mel[0].numpy(), num_samples=300, seed=5, temperature=temperature, block_size=64)
    fast = model.generate(req)
    assert fast.dtype == np.float32 and fast.shape == (300,)
    np.testing.assert_array_equal(fast, plain.numpy())
    if temperature > 0:
        assert len(np.unique(fast)) > 20  # really sampled, not stuck on one value


def test_fast_path_follows_weight_changes():
    """The fast path caches its composed weights; an in-place update (an optimiser step) must rebuild them."""
    model = tiny_model()
    mel = torch.randn(1, 8, 10)
    req = GenerateRequest(mel=mel[0].numpy(), seed=1, temperature=0.0)
    before = model.generate(req)
    with torch.no_grad():
        model.fc3.bias.add_(torch.linspace(-3, 3, 512))
    after = model.generate(req)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, model.generate_plain(mel, 160, torch.Generator(), 0.0).numpy())


def test_sampling_by_inverse_cdf_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3]]).clamp_min(1e-30)).expand(20000, 4)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_classes(logits, u, 1.0), minlength=4).float() / 20000
    assert torch.allclose(counts, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.015)
    assert sample_classes(logits[:1], u[:1], 0.0).item() == 2
    sharp = torch.bincount(sample_classes(logits, u, 0.3), minlength=4).float() / 20000
    assert sharp[2] > 0.85


# -- seeds, streaming interface --------------------------------------------------------------------------
@pytest.mark.parametrize("folded", [False, True])
def test_same_seed_same_samples_and_another_seed_differs(folded):
    model = tiny_model()
    mel = np.random.default_rng(0).standard_normal((8, 40)).astype(np.float32)
    opts = {"folded": True, "fold_length": 160, "fold_overlap": 32} if folded else {}

    def run(seed):
        return model.generate(GenerateRequest(mel=mel, seed=seed, block_size=100, options=dict(opts)))

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (640,) and not np.array_equal(a, c)


@pytest.mark.parametrize(("mode", "bits"), MODES)
@pytest.mark.parametrize("folded", [False, True])
def test_stream_gives_float32_blocks_in_range_of_the_requested_length(mode, bits, folded):
    model = tiny_model(mode, bits)
    mel = np.random.default_rng(1).standard_normal((8, 50)).astype(np.float32)
    progress = []
    opts = {"folded": True, "fold_length": 192, "fold_overlap": 32} if folded else {}
    req = GenerateRequest(mel=mel, num_samples=731, block_size=128, options=opts,
                          progress=lambda done, total: progress.append((done, total)))
    blocks = list(model.stream(req))
    out = np.concatenate(blocks)
    assert out.dtype == np.float32 and out.shape == (731,)
    assert np.all(np.abs(out) <= 1.0) and np.all(np.isfinite(out)) and out.std() > 0.01
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert len(blocks) >= 3 and progress[-1] == (731, 731)
    if not folded:
        assert [len(b) for b in blocks[:-1]] == [128] * (len(blocks) - 1)


def test_unconditional_model_streams():
    model = tiny_model(n_mels=0)
    assert not model.conditioned
    out = model.generate(GenerateRequest(num_samples=200, seed=1, block_size=50))
    assert out.shape == (200,) and np.all(np.abs(out) <= 1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(GenerateRequest(num_samples=20, temperature=-1.0))


# -- folding: pure logic ------------------------------------------------------------------------------------
def test_fold_cuts_overlapping_segments_and_linear_unfold_round_trips():
    length, overlap = 50, 12
    x = torch.arange(1, 238, dtype=torch.float64)
    segs = fold.fold(x, length, overlap)
    count = fold.fold_count(len(x), length, overlap)
    assert segs.shape == (count, length + 2 * overlap) and count == 4
    for i, start in enumerate(fold.segment_starts(count, length, overlap)):
        part = x[start : start + length + 2 * overlap]
        assert torch.equal(segs[i, : len(part)], part) and torch.all(segs[i, len(part) :] == 0)
    # conditioning-shaped input folds along time only
    cond = torch.arange(237 * 3, dtype=torch.float64).view(237, 3)
    assert torch.equal(fold.fold(cond, length, overlap)[2, :, 1], fold.fold(cond[:, 1], length, overlap)[2])
    assert torch.allclose(fold.unfold(segs, length, overlap, len(x), fade="linear"), x, rtol=0, atol=1e-12)


def test_unfold_discards_warm_up_and_fades_with_equal_power():
    length, overlap = 50, 12
    warm, cross = overlap // 2, overlap - overlap // 2
    fade_in, fade_out = fold.fade_curves(overlap, "power", dtype=torch.float64)
    assert torch.allclose(fade_in**2 + fade_out**2, torch.ones(cross, dtype=torch.float64))
    assert torch.all(torch.diff(fade_in) > 0) and fade_in[0] > 0 and fade_out[-1] > 0
    # two "segments" of constant, different content: 1 then 2 (with junk in the warm-up)
    y = torch.ones(2, length + 2 * overlap, dtype=torch.float64)
    y[1] = 2.0
    y[1, :warm] = 1e6
    out = fold.unfold(y, length, overlap, 2 * length + 3 * overlap)
    seam = length + overlap  # where segment 1 starts
    assert torch.all(out[: seam + warm] == 1.0)  # segment 0 alone, warm-up junk never shows
    assert torch.allclose(out[seam + warm : seam + overlap], fade_out + 2.0 * fade_in)
    assert torch.all(out[seam + overlap :] == 2.0)


def test_final_prefix_grows_with_segment_zero_then_completes():
    length, overlap, count = 100, 20, 3
    seg = length + 2 * overlap
    assert fold.final_prefix(50, count, length, overlap) == 50
    assert fold.final_prefix(seg - 1, count, length, overlap) == length + overlap + overlap // 2
    assert fold.final_prefix(seg, count, length, overlap) == count * (length + overlap) + overlap
    with pytest.raises(ValueError, match="fold_overlap"):
        fold.fold_count(100, 10, 1)


# -- folding through real generation: the seam test -----------------------------------------------------------
def follower_model(memory: float = 0.2, smooth: bool = False) -> WaveRNN:
    """A hand-set WaveRNN whose argmax output tracks mel band 0 with a short memory of its last sample.

    Both GRUs are zeroed (their state stays 0, so the residuals pass I straight through); I's first
    unit is ``mel_0 + memory * x_prev``; FC1/FC2 copy it through the ReLUs as ``v``; FC3 scores class
    k by ``alpha * k * v - beta * k**2``, whose argmax is ``511 * v``. So sample t's class is about
    ``511 * (mel_0(t) + memory * x_{t-1})``: a recursion that forgets its start at a rate of
    ``2 * memory`` per sample, which is exactly what a folded segment's warm-up must absorb. The
    upsampling convolutions are set to pass the stretched mel unchanged (unless ``smooth``), so the
    output jumps at every frame boundary: a segment joined one sample off would show there.
    """
    model = tiny_model(bits=9)
    with torch.no_grad():
        for p in model.parameters():
            if not smooth or p.dim() != 4:  # the upsampler's moving averages are its only 4-D weights
                p.zero_()
        for conv in model.upsample.up_layers[1::2]:
            if not smooth:  # plain stretch: the mel steps at frame boundaries
                conv.weight[0, 0, 0, conv.weight.shape[-1] // 2] = 1.0
        model.I.weight[0, 0] = memory
        model.I.weight[0, 1] = 1.0
        model.fc1.weight[0, 0] = 1.0
        model.fc2.weight[0, 0] = 1.0
        beta = 1e-3
        k = torch.arange(512, dtype=torch.float32)
        model.fc3.weight[:, 0] = 2 * beta * 511 * k
        model.fc3.bias[:] = -beta * k**2
    return model


def follower_mel(frames: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    mel = rng.standard_normal((8, frames)).astype(np.float32)
    mel[0] = rng.uniform(0.35, 0.8, frames)  # band 0 drives the output; it jumps every frame
    return mel


def in_classes(x: np.ndarray) -> np.ndarray:
    """Audio -> continuous 9-bit mu-law class units (the compander without rounding)."""
    return np.sign(x) * np.log1p(511 * np.abs(x)) / np.log1p(511) * 255.5


def test_folded_generation_joins_segments_exactly_where_the_plain_stream_is():
    model = follower_model()
    mel = follower_mel(60)
    total = 60 * 16
    length, overlap = 160, 32
    unfolded = model.generate(GenerateRequest(mel=mel, temperature=0.0, block_size=10_000))
    folded = model.generate(GenerateRequest(
        mel=mel, temperature=0.0, block_size=10_000,
        options={"folded": True, "fold_length": length, "fold_overlap": overlap, "fold_fade": "linear"},
    ))
    assert folded.shape == unfolded.shape == (total,)
    count = fold.fold_count(total, length, overlap)
    assert count == 5
    # float ties may move a sample by a class; anything misaligned, or a warm-up that leaked into the
    # output, is off by tens of classes
    assert np.max(np.abs(in_classes(folded) - in_classes(unfolded))) <= 2.0
    steps = np.abs(np.diff(in_classes(unfolded)))
    assert np.sort(steps)[-40] > 20  # big jumps at most frame boundaries: an offset by one sample would show
    # the warm-up matters: segment 1's first samples (made from a zero state) are far from the stream,
    # its samples after the warm-up agree with it
    with torch.inference_mode():
        cond = model.conditioning(torch.from_numpy(mel)[None], total)
        *_, (_, classes) = model.generate_classes(fold.fold(cond[0], length, overlap), torch.Generator(), 0.0, 10**6)
    segment1 = in_classes(model.decode(classes[1]).numpy())
    start = length + overlap
    assert abs(segment1[0] - in_classes(unfolded)[start]) > 10
    warm = overlap // 2
    assert np.max(np.abs(segment1[warm:] - in_classes(unfolded)[start + warm : start + length + 2 * overlap])) <= 2


def test_folded_equal_power_seams_have_no_clicks():
    model = follower_model(smooth=True)
    mel = follower_mel(60)
    length, overlap = 160, 32
    unfolded = model.generate(GenerateRequest(mel=mel, temperature=0.0, block_size=10_000))
    folded = model.generate(GenerateRequest(
        mel=mel, temperature=0.0, block_size=10_000,
        options={"folded": True, "fold_length": length, "fold_overlap": overlap},
    ))
    count = fold.fold_count(len(unfolded), length, overlap)
    expected_gain = np.ones(len(unfolded))
    fade_in, fade_out = fold.fade_curves(overlap, "power", dtype=torch.float64)
    seams = []
    for start in fold.segment_starts(count, length, overlap)[1:]:
        zone = slice(start + overlap // 2, start + overlap)
        expected_gain[zone] = (fade_in + fade_out).numpy()
        seams.append(zone)
    # identical content on both sides of a seam: equal-power weights sum to sin + cos there
    assert np.max(np.abs(in_classes(folded) - in_classes(unfolded * expected_gain))) <= 2.0
    # no clicks: the largest sample-to-sample step at a seam is no larger than elsewhere (plus the smooth gain)
    jumps = np.abs(np.diff(folded))
    seam_mask = np.zeros(len(jumps), bool)
    for zone in seams:
        seam_mask[zone.start - 1 : zone.stop] = True
    assert jumps[seam_mask].max() <= jumps[~seam_mask].max()


# -- cancel ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("folded", [False, True])
def test_cancel_lands_within_200_ms(folded):
    model = tiny_model(rnn_dims=64, fc_dims=64)
    mel = np.random.default_rng(2).standard_normal((8, 4000)).astype(np.float32)  # 64000 samples
    token = CancelToken()
    opts = ({"folded": True, "fold_length": 16000, "fold_overlap": 64} if folded else {}) | {"native": False}  # the torch steps; the native loop has its own cancel test
    req = GenerateRequest(mel=mel, block_size=1_000_000, cancel=token, options=opts)
    audio, latency = cancel_mid_run(lambda: model.generate(req), token, after_s=0.4)
    assert latency < 0.2, f"generate returned {latency * 1000:.0f} ms after cancel"
    assert 0 < len(audio) < 64000


# -- training on real speech ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 0.6 s of real synthesized speech (espeak-ng), resampled to the tiny profile's 16 kHz."""
    return espeak_word(tmp_path_factory.mktemp("speech"), PROFILE.sample_rate, peak=0.9)


def entropy_nats(classes: np.ndarray) -> float:
    p = np.bincount(classes) / len(classes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "bits"), MODES)
def test_a_few_dozen_training_steps_lower_the_loss(speech, mode, bits):
    """60 Adam steps on 16 x 160-sample crops of one spoken word. The loss must fall well below its start
    and below the entropy of the data's class histogram -- the best any model ignoring context could do
    -- so the network has learned to use the past samples (and mel) it is given. Dual mode is judged on
    its coarse head; the fine byte of speech is close to noise at this stage."""
    torch.set_num_threads(1)  # the GRU's per-step products are tiny; a thread team only adds barriers
    model = tiny_model(mode, bits, seed=3).train()
    front = MelFrontEnd(PROFILE)
    seg = 160
    fixed = evenly_spaced_crops(speech, seg)
    targets = model.encode(torch.from_numpy(speech)).numpy()

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            if mode == "mulaw":
                loss = model.training_loss(fixed, front(fixed)).item()
            else:
                logits = model.teacher_forced_logits(fixed, front(fixed))[:, :, 0]
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, 256), (model.encode(fixed) // 256).reshape(-1)
                ).item()
        model.train()
        return loss

    before = evaluate()
    batch = adam_steps_on_random_crops(model, speech, front, length=seg)  # 60 steps of 16 crops
    after = evaluate()
    context_free = entropy_nats(targets if mode == "mulaw" else targets // 256)
    assert after < before - 0.4, (before, after)
    assert after < context_free - 0.15, (after, context_free)
    with pytest.raises(ValueError, match="mel frames"):
        model.training_loss(batch, front(batch)[..., :-1])
