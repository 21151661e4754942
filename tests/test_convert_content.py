"""The content encoder: the bundled one recognises phones of held-out speech, a short real training run
learns them, its files load safely, and the selection it keys agrees with the plain computations.

The held-out clips and their Festival phone labels are in tests/data/voice_clips (see its README).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice conversion needs pyworld (scripts/setup installs it)")

from studio.engine.convert import content, frameselect  # noqa: E402
from studio.engine.convert import content_train as ct  # noqa: E402
from studio.engine.convert.mapping import SpeakerMapping  # noqa: E402
from studio.engine.convert.voice import load_voice  # noqa: E402

CLIPS = Path(__file__).resolve().parent / "data" / "voice_clips"
VOICES = Path(__file__).resolve().parent.parent / "resources" / "voices"


def recordings(*numbers: str) -> list[ct.LabelledRecording]:
    return [ct.LabelledRecording(CLIPS / f"ru-ru_{n}.flac", CLIPS / f"ru-ru_{n}.lab") for n in numbers]


@pytest.fixture(scope="module")
def held_out() -> ct.FrameSet:
    return ct.analyse(recordings("0836", "0839"), warps=(0.85, 1.0, 1.17))


def majority_share(frames: ct.FrameSet) -> float:
    _, counts = np.unique(frames.phones, return_counts=True)
    return float(counts.max() / counts.sum())


def test_bundled_encoder_recognises_held_out_phones(held_out):
    assert content.bundled_encoder_path() == VOICES / "ru-phones", "resources/voices/ru-phones.content.* should ship"
    encoder = content.load_encoder(content.bundled_encoder_path())
    # Measured: 0.73 unwarped, 0.69 at 1.17 over all 44 held-out recordings; the most frequent phone
    # of these two clips covers well under a fifth of their frames.
    assert majority_share(held_out) < 0.2
    assert ct.accuracy(encoder, held_out, 1.0) > 0.6
    assert ct.accuracy(encoder, held_out, 0.85) > 0.55
    assert ct.accuracy(encoder, held_out, 1.17) > 0.5
    keys = encoder.keys(ct.own_standardised(held_out.coded[1.0], held_out.voiced), held_out.breaks)
    assert keys.shape == (held_out.phones.size, encoder.key_dims)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)


def test_a_short_training_run_learns_phones_and_round_trips(tmp_path):
    train = ct.analyse(recordings("0803", "0806"))
    assert train.breaks.sum() == 2 and set(train.coded) == set(ct.WARPS)
    encoder = ct.train_content_encoder(train, context=2, epochs=4, threads=1)
    # Frames it was trained on: far above always guessing the most frequent phone.
    assert ct.accuracy(encoder, train, 1.0) > majority_share(train) + 0.3
    assert encoder.record["frames"] == train.phones.size and encoder.record["epochs"] == 4
    path = content.save_encoder(encoder, tmp_path / "tiny")
    loaded = content.load_encoder(path)
    assert loaded.phones == encoder.phones and loaded.context == 2
    z = ct.own_standardised(train.coded[1.0], train.voiced)
    # float16 on disk: the keys agree closely with the float32 network's
    np.testing.assert_allclose(loaded.keys(z, train.breaks), encoder.keys(z, train.breaks), atol=5e-3)


def test_chunked_keys_equal_the_plain_computation():
    rng = np.random.default_rng(0)
    d, context = 6, 3
    weights = {
        "w1": rng.normal(size=((2 * context + 1) * (d - 1), 8)).astype(np.float32), "b1": rng.normal(size=8).astype(np.float32),
        "w2": rng.normal(size=(8, 5)).astype(np.float32), "b2": rng.normal(size=5).astype(np.float32),
        "w3": rng.normal(size=(5, 4)).astype(np.float32), "b3": rng.normal(size=4).astype(np.float32),
    }
    encoder = content.ContentEncoder(context, d, ["a", "b", "c", "d"], weights)
    z = rng.normal(size=(9000, d - 1)).astype(np.float32)  # crosses the 4096-row chunks
    breaks = np.zeros(9000, dtype=bool)
    breaks[[0, 4095, 4100, 8192]] = True
    plain_x = np.stack([
        np.concatenate([z[j] for j in neighbours(i, breaks, context)]) for i in range(z.shape[0])
    ])
    plain = np.maximum(np.maximum(plain_x @ weights["w1"] + weights["b1"], 0) @ weights["w2"] + weights["b2"], 0)
    np.testing.assert_allclose(encoder.hidden(z, breaks), plain, rtol=1e-5, atol=1e-5)
    posteriors = encoder.phone_posteriors(z, breaks)
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0, atol=1e-5)


def neighbours(i: int, breaks: np.ndarray, context: int) -> list[int]:
    """Frame i, then −1, +1, −2, +2 …; one past an end is that end's frame, one in another recording is i."""
    segment = np.cumsum(breaks)
    out = [i]
    for d in range(1, context + 1):
        for j in (i - d, i + d):
            j = min(max(j, 0), breaks.size - 1)
            out.append(j if segment[j] == segment[i] else i)
    return out


def test_combined_match_is_the_weighted_cosine():
    rng = np.random.default_rng(1)
    keys = frameselect._unit(rng.normal(size=(300, 12))).astype(np.float32)
    contents = frameselect._unit(rng.normal(size=(300, 7))).astype(np.float32)
    queries = rng.normal(size=(40, 12))
    query_content = frameselect._unit(rng.normal(size=(40, 7))).astype(np.float32)
    for weight in (0.0, 0.4, 1.0):
        found = frameselect.nearest_combined(queries, keys, query_content, contents, weight, 3)
        sims = (1 - weight) * (frameselect._unit(queries) @ keys.T) + weight * (query_content @ contents.T)
        expected = np.argsort(-sims, axis=1)[:, :3]
        assert (np.sort(found, axis=1) == np.sort(expected, axis=1)).all()
    envelope_only = frameselect.nearest_cosine(queries, keys, 3)
    assert (np.sort(frameselect.nearest_combined(queries, keys, query_content, contents, 0.0, 3), axis=1)
            == np.sort(envelope_only, axis=1)).all()


def test_content_keys_of_a_voice_follow_its_recordings():
    ru = load_voice(VOICES / "ru")
    encoder = content.load_encoder(VOICES / "ru-phones")
    keys = frameselect.target_content(ru, encoder)
    assert keys.shape == (ru.arrays["frames_env"].shape[0], encoder.key_dims)
    assert frameselect.target_content(ru, encoder) is keys  # cached on the voice
    assert SpeakerMapping().content_weight > 0
    with pytest.raises(ValueError, match="content_weight"):
        SpeakerMapping(content_weight=1.5)


def test_damaged_or_foreign_encoder_files_are_refused_with_a_reason(tmp_path):
    bundled = content.bundled_encoder_path()
    json_path, arrays_path = content.encoder_paths(bundled)
    stem = tmp_path / "copy"
    copy_json, copy_arrays = content.encoder_paths(stem)
    document = json.loads(json_path.read_text())
    data = arrays_path.read_bytes()

    copy_json.write_text(json.dumps(document))
    copy_arrays.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(content.ContentEncoderError, match="damaged"):
        content.load_encoder(stem)

    import pickle

    copy_arrays.write_bytes(pickle.dumps({"w1": [1, 2, 3]}))  # a pickle is never unpickled
    with pytest.raises(content.ContentEncoderError, match="damaged"):
        content.load_encoder(stem)

    copy_arrays.write_bytes(data)
    copy_json.write_text(json.dumps({**document, "context": document["context"] + 1}))  # shapes no longer agree
    with pytest.raises(content.ContentEncoderError, match="shapes"):
        content.load_encoder(stem)

    copy_json.write_text(json.dumps({**document, "format": "something-else"}))
    with pytest.raises(content.ContentEncoderError, match="not a Waveform Studio content encoder"):
        content.load_encoder(stem)

    copy_json.unlink()
    with pytest.raises(content.ContentEncoderError, match="no such"):
        content.load_encoder(stem)


def test_merged_encoders_compute_their_members_side_by_side():
    rng = np.random.default_rng(2)
    d, context, phones = 5, 1, ["a", "b", "c"]

    def member():
        shapes = {"w1": ((2 * context + 1) * (d - 1), 6), "b1": (6,), "w2": (6, 4), "b2": (4,), "w3": (4, 3), "b3": (3,)}
        return content.ContentEncoder(context, d, phones, {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})

    members = [member(), member(), member()]
    merged = content.merge_encoders(members)
    z = rng.normal(size=(50, d - 1)).astype(np.float32)
    np.testing.assert_allclose(merged.hidden(z), np.concatenate([m.hidden(z) for m in members], axis=1), rtol=1e-5, atol=1e-5)
    logits = np.mean([m.hidden(z) @ m.weights["w3"] + m.weights["b3"] for m in members], axis=0)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(merged.phone_posteriors(z), expected / expected.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="same context"):
        content.merge_encoders([members[0], content.ContentEncoder(2, d, phones, members[1].weights)])


def _festvox_layout(root: Path, clips: dict[str, str], labels: bool = True) -> Path:
    """A festvox-ru-like folder (wav/ and lab/) from the labelled test clips: {new name: clip number}."""
    from studio.engine.audio import files

    (root / "wav").mkdir(parents=True)
    (root / "lab").mkdir()
    for name, number in clips.items():
        audio, rate = files.load(CLIPS / f"ru-ru_{number}.flac")
        files.save(root / "wav" / f"{name}.wav", audio, rate)
        if labels:
            (root / "lab" / f"{name}.lab").write_text((CLIPS / f"ru-ru_{number}.lab").read_text())
    return root / "wav"


def _studio(capsys, *args: str) -> tuple[int, str, str]:
    from studio.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_studio_voice_train_content_trains_scores_and_writes_an_encoder(tmp_path, monkeypatch, capsys):
    from studio.engine.convert import corpora

    wav = _festvox_layout(tmp_path / "festvox", {"ru_0001": "0803", "ru_0002": "0806", "ru_0836": "0836"})
    monkeypatch.setitem(corpora.CORPORA, "ru", lambda: corpora.festvox_ru(wav))
    code, out, err = _studio(
        capsys, "voice", "train-content", "--out", str(tmp_path / "enc"), "--epochs", "2", "--members", "2", "--threads", "1"
    )
    assert code == 0, err
    assert "2 member(s)" in out and "held-out frame accuracy" in out
    encoder = content.load_encoder(tmp_path / "enc")
    assert encoder.record["members"] == 2 and encoder.record["seeds"] == [0, 1]
    assert "2 labelled training recordings; held out: 1" in encoder.record["data"]
    assert set(encoder.record["held_out_accuracy"]) == {"0.85", "1.0", "1.17"}
    assert encoder.key_dims == 2 * ct.HIDDEN[1]


def test_studio_voice_train_content_without_labels_says_so(tmp_path, monkeypatch, capsys):
    from studio.engine.convert import corpora

    wav = _festvox_layout(tmp_path / "festvox", {"ru_0001": "0803"}, labels=False)
    monkeypatch.setitem(corpora.CORPORA, "ru", lambda: corpora.festvox_ru(wav))
    code, _, err = _studio(capsys, "voice", "train-content", "--out", str(tmp_path / "enc"), "--threads", "1")
    assert code != 0 and "no label files" in err
    assert not content.encoder_paths(tmp_path / "enc")[0].exists()


def test_an_encoder_in_the_user_voices_folder_shadows_the_bundled_one(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_VOICES_DIR", str(tmp_path))
    assert content.encoder_path() == VOICES / "ru-phones"
    assert content.default_output_stem() == VOICES / "ru-phones"  # a source checkout: the recipe's own file
    content.save_encoder(content.load_encoder(VOICES / "ru-phones"), tmp_path / "ru-phones")
    assert content.encoder_path() == tmp_path / "ru-phones"
