"""DNSMOS P.835: a non-intrusive (reference-free) estimate of speech quality on the 1–5 MOS scale.

The network is Microsoft's DNSMOS P.835 model (``sig_bak_ovr.onnx``) as shipped, with its MIT licence,
inside the PyPI package ``speechmos``. We only read that file and run it with onnxruntime: importing
``speechmos.dnsmos`` itself would pull librosa (and numba) for the P.808 head, which we do not use.

Procedure (as the DNS Challenge scorer does it): audio at 16 kHz is tiled until it is at least 9.01 s
long, cut into 9.01 s windows hopped by 1 s, each window is scored by the network, the raw SIG/BAK/OVRL
outputs are mapped through the published third-order calibration polynomials, and the windows are
averaged. Scores: SIG = speech signal quality, BAK = background (noise) quality, OVRL = overall.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.engine.evaluation.extras import require

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 9.01
HOP_SECONDS = 1.0
MODEL_FILE = ("dnsmos_models", "sig_bak_ovr.onnx")

# Calibration polynomials of the non-personalised P.835 model, highest power first (DNS Challenge).
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

_session = None
_session_lock = threading.Lock()


@dataclass(frozen=True)
class DnsmosScores:
    """DNSMOS P.835 scores, each a MOS on 1–5 (higher is better)."""

    sig: float
    bak: float
    ovrl: float


def model_path() -> Path:
    """Where the installed ``speechmos`` package keeps the P.835 ONNX model."""
    require("speechmos", "DNSMOS")
    spec = importlib.util.find_spec("speechmos")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"the DNSMOS model {path} is missing: reinstall with pip install -e .[eval]")
    return path


def _get_session():
    global _session
    with _session_lock:
        if _session is None:
            ort = require("onnxruntime", "DNSMOS")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            options.inter_op_num_threads = 1
            _session = ort.InferenceSession(
                str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        return _session


def windows(audio16k: np.ndarray) -> np.ndarray:
    """The 9.01 s windows, hopped by 1 s, that DNSMOS scores: float32 [n_windows, 144160]."""
    x = np.asarray(audio16k, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError("DNSMOS needs some audio, got an empty signal")
    length = int(WINDOW_SECONDS * SAMPLE_RATE)
    if x.size < length:
        x = np.tile(x, int(np.ceil(length / x.size)))
    n = int(np.floor(x.size / SAMPLE_RATE - WINDOW_SECONDS)) + 1
    hop = int(HOP_SECONDS * SAMPLE_RATE)
    return np.stack([x[i * hop : i * hop + length] for i in range(n)])


def score(audio16k: np.ndarray) -> DnsmosScores:
    """DNSMOS P.835 of mono float audio at 16 kHz in [-1, 1] (any length; short clips are tiled)."""
    segs = windows(audio16k)
    session = _get_session()
    raw = session.run(None, {session.get_inputs()[0].name: segs})[0]  # [n_windows, 3]: sig, bak, ovrl
    return DnsmosScores(
        sig=float(np.mean(_POLY_SIG(raw[:, 0]))),
        bak=float(np.mean(_POLY_BAK(raw[:, 1]))),
        ovrl=float(np.mean(_POLY_OVRL(raw[:, 2]))),
    )
