"""The settings a generation shares between the studio's job and the model's request, and the joined
tail of a folded generation (``folded_stream.stream_joined``)."""

from __future__ import annotations

import numpy as np
import torch

from studio.engine.audio.features import FeatureProfile
from studio.engine.models.base import CancelToken, GenerateRequest
from studio.engine.models.distribution import DistributionTap
from studio.engine.models.folded_stream import stream_joined
from studio.engine.models.generation_settings import GenerationSettings
from studio.engine.models.wavenet import WaveNet, WaveNetConfig
from studio.workers.generation import GenerationJob, GenerationWorker

PROFILE = FeatureProfile(
    name="settings-test", sample_rate=16000, n_fft=256, hop_length=64, win_length=256, n_mels=8, fmin=0.0, fmax=8000.0
)


def test_defaults_are_the_requests_and_a_job_streams_in_smaller_blocks():
    request, job = GenerateRequest(), GenerationJob(model=None)
    assert request.generation_settings() == {
        "seed": 0, "temperature": 1.0, "sigma": 0.6, "denoise": 0.0, "device": "cpu", "block_size": 2048, "options": {},
    }
    assert job.generation_settings() == {**request.generation_settings(), "block_size": 512}
    assert isinstance(job, GenerationSettings) and isinstance(request, GenerationSettings)


def test_the_generation_worker_hands_the_jobs_settings_to_the_model(qapp):
    """The worker's audio is the model's own for the job's seed, temperature, block size and options."""
    torch.manual_seed(0)
    config = WaveNetConfig(layers=4, dilation_cycle=2, residual_channels=8, gate_channels=8, skip_channels=8, n_mels=0)
    model = WaveNet(config, PROFILE).eval()
    settings = {"seed": 11, "temperature": 0.7, "block_size": 96, "options": {"native": False}}

    def worker_audio(**changes) -> np.ndarray:
        worker = GenerationWorker(GenerationJob(model=model, num_samples=400, **{**settings, **changes}))
        blocks: list[np.ndarray] = []
        worker.blocks.connect(blocks.append)  # emitted on this thread: delivered at once
        worker.work()
        return np.concatenate(blocks)

    expected = model.generate(GenerateRequest(num_samples=400, **settings))
    assert expected.shape == (400,)
    np.testing.assert_array_equal(worker_audio(), expected)
    assert not np.array_equal(worker_audio(seed=12), expected)  # the seed reached the model
    assert not np.array_equal(worker_audio(temperature=0.0), expected)  # and so did the temperature


def test_the_joined_tail_goes_out_in_blocks_after_the_held_rows():
    events: list[tuple] = []
    tap = DistributionTap(lambda start, probs: events.append(("rows", start, probs.shape)), stride=2, limit=10)
    tap.record_span(0, torch.zeros(10, 4))  # rows of samples 0, 2, 4, 6, 8
    for piece in stream_joined(torch.arange(10.0), 3, 10, 3, GenerateRequest(), tap):
        events.append(("block", piece.tolist()))
    assert events == [("rows", 0, (5, 4)), ("block", [3.0, 4.0, 5.0]), ("block", [6.0, 7.0, 8.0]), ("block", [9.0])]


def test_the_joined_tail_stops_after_the_block_during_which_it_was_cancelled():
    token = CancelToken()
    request = GenerateRequest(cancel=token)
    got = []
    for piece in stream_joined(torch.arange(10.0), 0, 10, 4, request, None):
        got.append(piece.tolist())
        token.cancel()
    assert got == [[0.0, 1.0, 2.0, 3.0]]
