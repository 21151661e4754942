"""``studio bench``: the JSON schema, ratios against the baseline, sizes and the measuring tools.

Real runs of the real CLI on tiny networks; no timed assertions (the machine is shared), only that
every figure is there, finite and positive, and that the baseline ran on the same network.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from studio.cli import main
from studio.engine.bench import measure
from studio.engine.bench.sizes import REFERENCE, model_for, models_for

RUN_KEYS = {
    "path", "description", "samples", "audio_seconds", "wall_s", "khz", "realtime", "first_block_ms",
    "cold_first_block_ms", "peak_rss_mib", "cuda_peak_mib", "threads", "load_average",
}
CASE_KEYS = {
    "family", "case", "description", "size", "source", "note", "sample_rate", "parameters", "config", "options",
    "device", "torch_version", "fast", "baseline", "speedup", "targets", "meets_targets", "model",
}


def run_json(capsys, *args: str) -> dict:
    status = main(["bench", "--json", "--size", "tiny", "--seconds", "0.2", "--baseline-budget", "0.3", *args])
    out = capsys.readouterr().out
    assert status == 0
    return json.loads(out)


def positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.parametrize(
    ("family", "cases"), [("wavenet", {"single"}), ("wavernn", {"single", "folded"}), ("waveglow", {"parallel"})]
)
def test_bench_json_has_every_figure_and_a_positive_ratio(capsys, family, cases):
    report = run_json(capsys, "--family", family)
    assert report["schema"] == 1
    assert report["machine"]["torch_version"] and report["machine"]["device"] == "cpu"
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch_threads"] >= 1
    assert len(report["load_average_start"]) == 3
    got = {c["case"] for c in report["cases"]}
    assert cases <= got and {c["family"] for c in report["cases"]} == {family}
    for case in report["cases"]:
        assert set(case) == CASE_KEYS
        assert case["source"] == "tiny" and case["meets_targets"] is None
        for run in (case["fast"], case["baseline"]):
            assert set(run) == RUN_KEYS
            assert run["samples"] > 0 and positive(run["khz"]) and positive(run["realtime"])
            assert run["khz"] * 1000 == pytest.approx(run["samples"] / run["wall_s"], rel=1e-6)
            assert run["realtime"] == pytest.approx(run["khz"] * 1000 / case["sample_rate"], rel=1e-6)
            assert positive(run["peak_rss_mib"]) and run["threads"] >= 1
        fast, base = case["fast"], case["baseline"]
        assert fast["path"] == "fast" and base["path"] == "baseline"
        # the fast run makes the whole request; the baseline at most as much (a shorter input is allowed)
        assert fast["samples"] == round(0.2 * case["sample_rate"])
        assert base["samples"] <= fast["samples"] + case["config"].get("upsample_window", 0) + 512
        assert positive(fast["first_block_ms"]) and positive(fast["cold_first_block_ms"])
        assert positive(case["speedup"])
        assert case["speedup"] == pytest.approx(fast["khz"] / base["khz"], rel=1e-6)


def test_case_filter_runs_only_the_named_cases(capsys):
    """`--case folded`: a GPU session benches the single streams on a short input and the folds on a long one."""
    report = run_json(capsys, "--family", "wavernn", "--family", "waveglow", "--case", "folded")
    assert [(c["family"], c["case"]) for c in report["cases"]] == [("wavernn", "folded")]
    assert report["options"]["cases"] == ["folded"]


def test_the_cuda_cases_add_waveglow_in_fp16_and_the_cpu_cases_do_not():
    from studio.engine.bench.cases import cases_for

    glow = model_for("waveglow", "tiny", 0).model
    assert [c.name for c in cases_for(glow, "cpu")] == ["parallel"]
    cuda = cases_for(glow, "cuda")
    assert [c.name for c in cuda] == ["parallel", "parallel-fp16"] and cuda[1].options == {"fp16": True}


def test_gpu_defaults_cut_longer_chunks_and_more_folds_than_cpu_defaults():
    """The first H100 run was launch-bound (docs/perf.md phase 6): on CUDA a stream names bigger work
    units by default; any chunking or folding is covered by the equality tests of each family."""
    from studio.engine.models import waveglow, wavernn

    assert waveglow.default_chunk_frames(4, "cpu") == waveglow.MIN_CHUNK_FRAMES
    assert waveglow.default_chunk_frames(4, "cuda") == waveglow.CUDA_CHUNK_FRAMES > waveglow.MIN_CHUNK_FRAMES
    assert waveglow.default_chunk_frames(700, "cuda") == 1400  # at least twice the overlap
    assert wavernn.default_fold_batch("cpu") == wavernn.DEFAULT_FOLD_BATCH
    assert wavernn.default_fold_batch("cuda") == wavernn.CUDA_FOLD_BATCH > wavernn.DEFAULT_FOLD_BATCH


def test_bench_text_names_cases_paths_and_ratios(capsys):
    status = main(["bench", "--size", "tiny", "--seconds", "0.1", "--baseline-budget", "0.2", "--family", "waveglow",
                   "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "waveglow parallel" in out and "baseline" in out and "x the baseline" in out
    assert "torch " in out and "load average" in out and "threads 1" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "seconds must be a positive number"),
        (["--threads", "0"], "threads must be >= 1"),
        (["--device", "cuda"], "no CUDA device"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, args, message):
    pytest.importorskip("torch")
    import torch

    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status = main(["bench", "--size", "tiny", "--family", "waveglow", *args])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_reference_sizes_are_the_published_architectures():
    wavenet = model_for("wavenet", "reference").model
    assert wavenet.config.layers == 24 and wavenet.config.stacks == 4 and wavenet.config.kernel_size == 3
    assert (wavenet.config.residual_channels, wavenet.config.gate_channels, wavenet.config.skip_channels) == (128, 256, 128)
    assert wavenet.config.out_classes == 256 and wavenet.config.upsample_factor == 256 and wavenet.sample_rate == 22050
    wavernn = model_for("wavernn", "reference").model
    assert (wavernn.config.rnn_dims, wavernn.config.fc_dims, wavernn.config.bits) == (512, 512, 9)
    assert wavernn.config.upsample_scales == (5, 5, 11) and wavernn.config.res_blocks == 10
    from studio.engine.models.waveglow import WaveGlowConfig

    glow = WaveGlowConfig(**REFERENCE["waveglow"].config)
    assert (glow.n_flows, glow.n_group, glow.n_early_every, glow.n_early_size) == (12, 8, 4, 2)
    assert (glow.wn_layers, glow.wn_channels, glow.wn_kernel_size) == (8, 256, 3)


def test_default_size_falls_back_to_training_defaults_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(tmp_path))
    spec = model_for("waveglow", "default")
    assert spec.source == "training default"
    assert "no bundled waveglow model" in spec.note
    from studio.engine.train.options import recipe_for

    for key, value in recipe_for("waveglow").config.items():
        assert spec.config[key] == value


def test_default_size_uses_a_bundled_model_when_there_is_one(tmp_path, monkeypatch):
    from studio.engine.checkpoints import save_checkpoint

    tiny = model_for("wavernn", "tiny").model
    tiny.name = "speech-rnn"
    save_checkpoint(tiny, tmp_path / "speech-rnn")
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(tmp_path))
    spec = model_for("wavernn", "default")
    assert spec.source == "bundled" and "speech-rnn" in spec.note
    assert spec.config["rnn_dims"] == tiny.config.rnn_dims


def test_default_size_benches_every_bundled_model_of_a_family(tmp_path, monkeypatch, capsys):
    from studio.engine.checkpoints import save_checkpoint

    for name, seed in (("music-net", 1), ("speech-net", 2)):
        model = model_for("wavenet", "tiny", seed=seed).model
        model.name = name
        save_checkpoint(model, tmp_path / name)
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(tmp_path))
    assert [s.model.name for s in models_for("wavenet", "default")] == ["music-net", "speech-net"]
    assert [s.source for s in models_for("wavenet", "tiny")] == ["tiny"]
    status = main(["bench", "--json", "--size", "default", "--family", "wavenet", "--seconds", "0.05",
                   "--baseline-budget", "0.1"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    runs = [(c["model"], c["case"]) for c in report["cases"]]
    assert runs == [("music-net", "single"), ("music-net", "folded"), ("speech-net", "single"),
                    ("speech-net", "folded")]
    for case in report["cases"]:  # held to the bundled-model targets
        assert case["source"] == "bundled" and case["targets"]["realtime"] == 1.5
        assert isinstance(case["meets_targets"], bool)


def test_peak_memory_sees_a_large_temporary_allocation():
    with measure.PeakMemory() as before:
        pass
    with measure.PeakMemory() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert mem.method in ("VmHWM", "sampled VmRSS")
    assert mem.peak_mib - mem.start_mib >= 48
    assert before.peak_mib - before.start_mib < 48


def test_machine_info_and_load_average():
    info = measure.MachineInfo.probe("cpu")
    assert info.cores >= 1 and info.torch_threads >= 1 and info.device == "cpu" and info.cpu
    load = measure.load_average()
    assert load is None or (len(load) == 3 and all(x >= 0 for x in load))


@pytest.mark.slow
@pytest.mark.sound
def test_gui_case_measures_event_loop_latency_while_the_window_generates(capsys, pulse_server, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STUDIO_BUNDLED_MODELS_DIR", str(tmp_path / "bundled"))
    report = run_json(capsys, "--family", "waveglow", "--gui", "--seconds", "1")
    (gui,) = report["extras"]
    assert gui["name"] == "gui event loop" and gui["family"] == "waveglow"
    assert gui["ticks"] > 10 and gui["audio_seconds"] > 0.5
    assert 0 <= gui["latency_p50_ms"] <= gui["latency_p99_ms"] <= gui["latency_max_ms"]
    assert isinstance(gui["meets_target"], bool) and gui["target_p99_ms"] == 30.0


@pytest.mark.slow
def test_memory_case_runs_a_short_and_a_long_generation_in_subprocesses(capsys):
    status = main(["bench", "--json", "--memory", "--size", "tiny", "--family", "wavernn", "--seconds", "0.6",
                   "--memory-short", "0.2"])
    out = capsys.readouterr().out
    assert status == 0
    report = json.loads(out)
    assert report["kind"] == "memory"
    (case,) = report["cases"]
    assert case["family"] == "wavernn" and case["meets_targets"] is None  # tiny: no target
    short, long = case["short"], case["long"]
    assert short["samples"] == round(0.2 * short["sample_rate"]) and long["samples"] == round(0.6 * long["sample_rate"])
    assert positive(short["peak_rss_mib"]) and positive(long["peak_rss_mib"])
    assert short["peak_rss_mib"] >= short["rss_before_mib"] * 0.5
    assert case["growth_mib"] == pytest.approx(long["peak_rss_mib"] - short["peak_rss_mib"])
    assert case["output_growth_mib"] == pytest.approx((long["samples"] - short["samples"]) * 4 / 2**20)
    assert "peak" in case["summary"] and "growth" in case["summary"]
