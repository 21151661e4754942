"""μ-law companding and quantisation into ``2**bits`` classes (the output alphabet of WaveNet/WaveRNN).

With μ = 2**bits − 1:

    encode:  y = sign(x)·ln(1 + μ|x|)/ln(1 + μ)  ∈ [−1, 1],   q = ⌊(y + 1)/2 · μ + ½⌋  ∈ {0, …, μ}
    decode:  y = 2q/μ − 1,                        x = sign(y)·((1 + μ)^|y| − 1)/μ

Round-trip error bound. Rounding moves y by at most δ = 1/μ (half of the class width 2/μ). The
expander g(y) = ((1 + μ)^|y| − 1)/μ has slope g'(y) = ln(1 + μ)/μ · (1 + μ)^|y|, and for every ξ within δ
of y = c(x): (1 + μ)^|ξ| ≤ (1 + μ)^(|y| + δ) = (1 + μ|x|)·(1 + μ)^(1/μ). By the mean value theorem

    |x − decode(encode(x))| ≤ ln(1 + μ)/μ² · (1 + μ)^(1/μ) · (1 + μ|x|)          (see ``roundtrip_error_bound``)

for |x| ≤ 1: about 8.7e-5 near zero and 2.2 % of full scale at |x| = 1 for 8 bits — the error is
proportional to the amplitude, which is the point of μ-law. Inputs outside [−1, 1] are clipped first.

Both functions take a numpy array or a torch tensor and return the same kind (a tensor stays on its
device). Classes are int64; decoded audio is float32. Pure functions, safe from any thread.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_BITS = 2
MAX_BITS = 16


def _mu(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return (1 << int(bits)) - 1


def _is_tensor(x: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but keep numpy use independent
        return False
    return isinstance(x, torch.Tensor)


def roundtrip_error_bound(x: float | np.ndarray, bits: int = 8) -> float | np.ndarray:
    """Largest possible |x − decode(encode(x))| at amplitude |x| ≤ 1 (derived in the module docstring)."""
    mu = _mu(bits)
    a = np.minimum(np.abs(np.asarray(x, dtype=np.float64)), 1.0)
    bound = math.log1p(mu) / mu**2 * (1 + mu) ** (1 / mu) * (1 + mu * a)
    return float(bound) if np.ndim(bound) == 0 else bound


def mulaw_encode(x: Any, bits: int = 8) -> Any:
    """Audio in [-1, 1] (numpy or torch, any shape) → int64 classes in [0, 2**bits) of the same shape."""
    mu = _mu(bits)
    if _is_tensor(x):
        import torch

        # float64 keeps 16-bit encoding exact at class boundaries; MPS has no float64, so fall back.
        dtype = torch.float32 if x.device.type == "mps" else torch.float64
        xf = x.to(dtype).clamp(-1.0, 1.0)
        y = torch.sign(xf) * torch.log1p(mu * xf.abs()) / math.log1p(mu)
        return torch.floor((y + 1.0) * (mu / 2.0) + 0.5).clamp(0, mu).to(torch.int64)
    xf = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(xf) * np.log1p(mu * np.abs(xf)) / math.log1p(mu)
    return np.clip(np.floor((y + 1.0) * (mu / 2.0) + 0.5), 0, mu).astype(np.int64)


def mulaw_decode(q: Any, bits: int = 8) -> Any:
    """Classes in [0, 2**bits) (numpy or torch, any shape, any int or float dtype) → float32 audio in [-1, 1]."""
    mu = _mu(bits)
    if _is_tensor(q):
        import torch

        dtype = torch.float32 if q.device.type == "mps" else torch.float64
        y = (q.to(dtype) * (2.0 / mu) - 1.0).clamp(-1.0, 1.0)
        x = torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
        return x.to(torch.float32)
    y = np.clip(np.asarray(q, dtype=np.float64) * (2.0 / mu) - 1.0, -1.0, 1.0)
    x = np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu
    return x.astype(np.float32)
