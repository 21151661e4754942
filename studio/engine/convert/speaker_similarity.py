"""Speaker similarity with the GE2E speaker encoder of PyPI ``resemblyzer`` (an evaluation tool).

``embed(audio, sr)`` gives a unit-length 256-d d-vector of an utterance; the cosine of two such
vectors (their dot product) is the similarity: same speaker ~0.85–0.97, different speakers ~0.5
(DATA.md). A speaker's *centroid* is the normalised mean of its utterances' d-vectors; voices built
while resemblyzer is installed carry theirs (``speaker_embedding``), so scoring a conversion needs
only the voice files. Runs on the calling thread (torch on the CPU).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable

import numpy as np

from studio.engine.convert.world import MissingDependencyError

EMBEDDING_RATE = 16000


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise MissingDependencyError(
            f"speaker similarity needs PyPI resemblyzer ({exc}); install it with "
            "`pip install 'waveform-studio[voice]'` (it also wants setuptools<81 for webrtcvad)"
        ) from exc
    return VoiceEncoder("cpu", verbose=False)


def available() -> bool:
    try:
        _encoder()
    except MissingDependencyError:
        return False
    return True


def embed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unit-length d-vector (float32 [256]) of one utterance (mono float [T] at ``sample_rate``)."""
    from resemblyzer import preprocess_wav

    from studio.engine.audio.resample import resample

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != EMBEDDING_RATE:
        x = resample(x, sample_rate, EMBEDDING_RATE)
    wav = preprocess_wav(x, source_sr=EMBEDDING_RATE)
    if wav.shape[0] < EMBEDDING_RATE // 2:  # the VAD kept almost nothing: score the raw signal
        wav = x
    e = _encoder().embed_utterance(wav)
    return (e / max(float(np.linalg.norm(e)), 1e-9)).astype(np.float32)


def centroid(embeddings: Iterable[np.ndarray]) -> np.ndarray:
    """The normalised mean of unit d-vectors (float32 [256])."""
    m = np.mean(np.stack(list(embeddings)), axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-9)).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two d-vectors."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))
