"""The shared ``WaveformModel.stream`` contract, through real (tiny, random-weight) models of each family."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support.tiny_training import TINY_WAVEGLOW, TINY_WAVENET

from studio.engine.audio.features import PRESETS
from studio.engine.models.base import GenerateRequest, build_model
from studio.engine.train.options import recipe_for

TINY = {
    "wavenet": TINY_WAVENET,
    "waveglow": TINY_WAVEGLOW,
    "wavernn": {"rnn_dims": 16, "fc_dims": 16, "res_blocks": 1, "compute_dims": 8, "res_out_dims": 8, "bits": 8},
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_progress_reaches_the_total_before_the_last_block_is_handed_over(family):
    """A consumer that stops iterating after the last block has still seen progress(total, total)."""
    profile = PRESETS[recipe_for(family).profile]
    model = build_model(family, TINY[family], profile)
    mel = np.random.default_rng(0).normal(-4.0, 1.0, (profile.n_mels, 6)).astype(np.float32)
    total = 6 * profile.hop_length
    calls: list[tuple[int, int]] = []
    request = GenerateRequest(mel=mel, block_size=256, progress=lambda done, n: calls.append((done, n)))
    got = 0
    for block in model.stream(request):
        got += block.shape[0]
        assert calls and calls[-1] == (got, total), "progress describes the block being handed over"
        if got == total:
            break  # stop without asking for more: the generator is never resumed
    assert got == total and calls[-1] == (total, total)


def test_asking_for_more_samples_than_the_mel_covers_says_so(caplog):
    profile = PRESETS["speech16k"]
    model = build_model("wavenet", TINY_WAVENET, profile)
    mel = np.zeros((profile.n_mels, 3), np.float32)
    with caplog.at_level(logging.WARNING, logger="studio.engine.models.base"):
        audio = model.generate(GenerateRequest(mel=mel, num_samples=10 * profile.hop_length))
    assert audio.shape[0] == 3 * profile.hop_length
    assert any("cover" in r.getMessage() and str(3 * profile.hop_length) in r.getMessage() for r in caplog.records)
