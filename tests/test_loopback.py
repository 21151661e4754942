"""Loopback through the real server: the Player's tone comes back through the Recorder.

The default source is the monitor of the default sink (tests/support/pulse.py), so what the Player
plays is what the Recorder hears, 21–36 ms later. Frequency and SNR are asserted, not amplitude.
"""

import numpy as np
import pytest
import soundfile as sf
from support.audio import dominant_frequency, tone, tone_snr_db, warm_up_output

from studio.engine.audio.player import Player, PlayerState
from studio.engine.audio.recorder import Recorder

pytestmark = pytest.mark.sound


@pytest.mark.parametrize("source_rate", [48000, 22050])
def test_tone_played_comes_back_at_the_same_frequency(pulse_server, tmp_path, artifacts_dir, source_rate):
    warm_up_output()
    path = tmp_path / f"loopback_{source_rate}.wav"
    player = Player()
    try:
        with Recorder(path, max_seconds=2.0) as rec:
            player.play_buffer(tone(1000, 1.5, source_rate), source_rate)
            assert player.wait(timeout=10)
            assert rec.wait(timeout=10)
        assert player.state == PlayerState.FINISHED and player.ring_underflows == 0
    finally:
        player.stop()
    audio, sr = sf.read(path, dtype="float32")
    assert sr == 48000 and len(audio) == 2 * sr
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert loud.size, "the tone did not come back"
    onset, offset = loud[0], loud[-1]
    # All of it, once: count the 1 ms blocks (one period of 1 kHz each) that hold the tone. A hiccup
    # of a loaded machine (an output underrun, a reopened stream) may put a pause INSIDE the tone, which
    # lengthens its span but not this count; a lost or repeated piece changes the count.
    periods = np.abs(audio[: len(audio) // 48 * 48]).reshape(-1, 48).max(axis=1)
    heard_s = np.count_nonzero(periods > 0.1) / 1000
    span_s = (offset - onset) / sr
    why = f"span {span_s:.3f} s, device underflows {player.device_underflows}, gaps {rec.gaps}"
    assert heard_s == pytest.approx(1.5, abs=0.02), why
    assert span_s - heard_s < 0.5, why
    middle = audio[onset + int(0.4 * sr) : onset + int(1.1 * sr)]
    assert dominant_frequency(middle, sr) == pytest.approx(1000, abs=2)
    assert tone_snr_db(middle, sr, 1000) > 30
    sf.write(f"{artifacts_dir}/loopback_{source_rate}.wav", audio, sr)
