"""The feature profile: one frozen description of how mel features are made, and the mel front end.

Every checkpoint stores its profile; every mel that meets a model is checked against it
(:func:`check_compatible`) and converted where that is possible (:func:`convert_mel`).

Framing (both conventions give a mel of exactly ``T // hop_length`` frames for ``T`` samples):

* ``center=True`` — reflect-pad n_fft/2 on the left, frame t is centred on sample ``t·hop`` (librosa,
  torch.stft(center=True), fatchord WaveRNN, NVIDIA WaveGlow; their trailing extra frame is dropped).
* ``center=False`` — reflect-pad (n_fft − hop)/2 on the left, frame t is centred on sample
  ``t·hop + ⌈hop/2⌉``, i.e. on the middle of the block of hop samples it describes (HiFi-GAN).

Mel filters are built here in numpy (no librosa/torchaudio): Slaney or HTK mel scale, optional Slaney
area normalisation, the same construction as ``librosa.filters.mel``. The presets are in :data:`PRESETS`.
Everything here is pure computation, safe from any thread.

This module does not import torch (it only handles tensors it is given), so reading model cards and
listing models stays fast; the torch front end (``MelFrontEnd``, ``compute_mel``) lives in
:mod:`studio.engine.audio.mel_frontend` and is re-exported here on first use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureProfile:
    """How a log-mel spectrogram is computed from audio.

    sample_rate: Hz. n_fft, hop_length, win_length: samples. n_mels: bands. fmin, fmax: Hz.
    power: 1 for a magnitude, 2 for a power spectrogram. mel_scale: "slaney" or "htk";
    mel_norm: "slaney" (area normalised filters) or None. log: "ln" (natural log of the clamped mel,
    as WaveGlow and HiFi-GAN) or "db" (20·log10 minus ref_level_db, then normalised to [0, 1] with
    min_level_db, as WaveRNN implementations). center: pad so frame t is centred on sample t·hop.
    A mel for ``T`` samples always has ``T // hop_length`` frames (see ``MelFrontEnd``).
    """

    name: str
    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    fmin: float
    fmax: float
    power: float = 1.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    log: str = "ln"
    clamp_min: float = 1e-5
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    center: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown feature profile fields: {sorted(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------- presets
PRESETS: dict[str, FeatureProfile] = {
    # NVIDIA WaveGlow / HiFi-GAN V1 (LJSpeech): 22050 Hz, n_fft 1024, hop 256, win 1024, 80 slaney mels
    # (librosa's default filters, area normalised) over 0–8000 Hz of the STFT *magnitude*, then
    # ln(max(mel, 1e-5)). Framing as HiFi-GAN's meldataset (reflect-pad (n_fft − hop)/2 each side,
    # center=False: frame t centred on t·hop + hop/2), so these mels feed the public HiFi-GAN V1
    # generators unchanged; NVIDIA's WaveGlow centres frames half a hop earlier, which its
    # convolutional upsampler tolerates.
    "waveglow": FeatureProfile(
        name="waveglow", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, power=1.0, mel_scale="slaney", mel_norm="slaney", log="ln",
        clamp_min=1e-5, center=False,
    ),
    # fatchord/WaveRNN (hparams.py): 22050 Hz, n_fft 2048, hop 275 (12.5 ms), win 1100 (50 ms),
    # 80 slaney mels from 40 Hz to Nyquist (11025) of the librosa STFT magnitude (center=True: frame t
    # centred on t·hop), then S = 20·log10(max(mel, 1e-5)) − ref_level_db (20) and
    # clip((S − min_level_db) / −min_level_db, 0, 1) with min_level_db −100: values in [0, 1],
    # digital silence = 0. (fatchord keeps librosa's extra last frame; here a mel has T // hop frames.)
    "wavernn": FeatureProfile(
        name="wavernn", sample_rate=22050, n_fft=2048, hop_length=275, win_length=1100, n_mels=80,
        fmin=40.0, fmax=11025.0, power=1.0, mel_scale="slaney", mel_norm="slaney", log="db",
        clamp_min=1e-5, ref_level_db=20.0, min_level_db=-100.0, center=True,
    ),
    # The studio's bundled speech models: 16 kHz, n_fft 1024 = win (64 ms), hop 200 (12.5 ms),
    # 80 slaney mels 0–8000 Hz, natural log of the magnitude clamped at 1e-5 (as "waveglow"), HiFi-GAN
    # framing (frame t covers samples [t·hop, (t+1)·hop) symmetrically: the block a vocoder makes from it).
    "speech16k": FeatureProfile(
        name="speech16k", sample_rate=16000, n_fft=1024, hop_length=200, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, power=1.0, mel_scale="slaney", mel_norm="slaney", log="ln",
        clamp_min=1e-5, center=False,
    ),
}


def get_profile(name_or_profile: str | FeatureProfile) -> FeatureProfile:
    """A preset by name (or the profile itself); ValueError naming the presets otherwise."""
    if isinstance(name_or_profile, FeatureProfile):
        return name_or_profile
    try:
        return PRESETS[name_or_profile]
    except KeyError:
        raise ValueError(f"unknown feature profile {name_or_profile!r}; presets: {sorted(PRESETS)}") from None


def validate_profile(p: FeatureProfile) -> None:
    """Raise ValueError listing every inconsistent field of ``p``."""
    problems = []
    if p.sample_rate < 1000:
        problems.append(f"sample_rate {p.sample_rate} < 1000 Hz")
    if p.n_fft < 2:
        problems.append(f"n_fft {p.n_fft} < 2")
    if not 1 <= p.win_length <= p.n_fft:
        problems.append(f"win_length {p.win_length} not in [1, n_fft={p.n_fft}]")
    if not 1 <= p.hop_length <= p.n_fft:
        problems.append(f"hop_length {p.hop_length} not in [1, n_fft={p.n_fft}]")
    if p.n_mels < 1:
        problems.append(f"n_mels {p.n_mels} < 1")
    if not 0 <= p.fmin < p.fmax <= p.sample_rate / 2:
        problems.append(f"need 0 <= fmin ({p.fmin}) < fmax ({p.fmax}) <= sample_rate/2 ({p.sample_rate / 2})")
    if p.power not in (1.0, 2.0):
        problems.append(f"power {p.power} is neither 1 (magnitude) nor 2 (power)")
    if p.mel_scale not in ("slaney", "htk"):
        problems.append(f"mel_scale {p.mel_scale!r} is neither 'slaney' nor 'htk'")
    if p.mel_norm not in ("slaney", None):
        problems.append(f"mel_norm {p.mel_norm!r} is neither 'slaney' nor None")
    if p.log not in ("ln", "db"):
        problems.append(f"log {p.log!r} is neither 'ln' nor 'db'")
    if not p.clamp_min > 0:
        problems.append(f"clamp_min {p.clamp_min} must be > 0")
    if p.log == "db" and not p.min_level_db < 0:
        problems.append(f"min_level_db {p.min_level_db} must be < 0")
    if problems:
        raise ValueError(f"feature profile {p.name!r} is invalid: " + "; ".join(problems))


# --------------------------------------------------------------------------------- mel filterbank
def hz_to_mel(hz: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Hz → mel. "htk": 2595·log10(1 + f/700). "slaney": linear below 1 kHz (3 mels per 200 Hz, so
    1 kHz = 15 mel), logarithmic above (27 mels per factor 6.4)."""
    f = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mel = f / _SLANEY_F_SP
    log_region = f >= _SLANEY_MIN_LOG_HZ
    return np.where(
        log_region,
        _SLANEY_MIN_LOG_MEL + np.log(np.maximum(f, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP,
        mel,
    )


def mel_to_hz(mel: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(
        m >= _SLANEY_MIN_LOG_MEL,
        _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - _SLANEY_MIN_LOG_MEL)),
        _SLANEY_F_SP * m,
    )


_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15
_SLANEY_LOGSTEP = float(np.log(6.4) / 27.0)


def mel_filterbank(profile: FeatureProfile) -> np.ndarray:
    """Triangular mel filters, float64 [n_mels, n_fft // 2 + 1] (the librosa/Slaney construction).

    Band i rises from mel point i to i+1 and falls to i+2, the n_mels + 2 points evenly spaced in mel
    between fmin and fmax; with mel_norm "slaney" each triangle is scaled by 2 / (f[i+2] − f[i]) (Hz)
    so every band has the same area.
    """
    p = profile
    n_freq = p.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, p.sample_rate / 2.0, n_freq)
    edges_mel = np.linspace(hz_to_mel(p.fmin, p.mel_scale), hz_to_mel(p.fmax, p.mel_scale), p.n_mels + 2)
    edges_hz = mel_to_hz(edges_mel, p.mel_scale)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if p.mel_norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def band_centres_hz(profile: FeatureProfile) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, [n_mels]."""
    p = profile
    edges_mel = np.linspace(hz_to_mel(p.fmin, p.mel_scale), hz_to_mel(p.fmax, p.mel_scale), p.n_mels + 2)
    return mel_to_hz(edges_mel[1:-1], p.mel_scale)


def analysis_window(profile: FeatureProfile) -> np.ndarray:
    """Periodic Hann window of win_length samples, zero-padded to n_fft (centred), float64 [n_fft]."""
    p = profile
    n = np.arange(p.win_length)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / p.win_length)
    window = np.zeros(p.n_fft)
    left = (p.n_fft - p.win_length) // 2
    window[left : left + p.win_length] = hann
    return window


def frame_padding(profile: FeatureProfile) -> tuple[int, int]:
    """(left, right) samples of padding so that T samples give exactly T // hop frames.

    center=True: left = n_fft // 2 (frame t centred on sample t·hop). center=False: left =
    (n_fft − hop) // 2 (frame t centred on t·hop + ⌈hop/2⌉, as HiFi-GAN). right = n_fft − hop − left
    (negative means: that many samples at the end are not analysed).
    """
    p = profile
    left = p.n_fft // 2 if p.center else (p.n_fft - p.hop_length) // 2
    return left, p.n_fft - p.hop_length - left


def num_frames(num_samples: int, profile: FeatureProfile) -> int:
    """Frames of a mel made from ``num_samples`` samples: ``num_samples // hop_length``."""
    return int(num_samples) // profile.hop_length


# ------------------------------------------------------------------------ compression (log / dB)
def compress(mel: Any, profile: FeatureProfile) -> Any:
    """Linear mel energies (magnitude^power) → the profile's feature values. numpy or torch in, same out.

    "ln": ln(max(mel, clamp_min)). "db": S = (20 / power)·log10(max(mel, clamp_min)) − ref_level_db,
    then clip((S − min_level_db) / −min_level_db, 0, 1).
    """
    p = profile
    if _is_tensor(mel):
        import torch

        m = torch.clamp(mel, min=p.clamp_min)
        if p.log == "ln":
            return torch.log(m)
        s = (20.0 / p.power) * torch.log10(m) - p.ref_level_db
        return torch.clamp((s - p.min_level_db) / -p.min_level_db, 0.0, 1.0)
    m = np.maximum(np.asarray(mel), p.clamp_min)
    if p.log == "ln":
        return np.log(m)
    s = (20.0 / p.power) * np.log10(m) - p.ref_level_db
    return np.clip((s - p.min_level_db) / -p.min_level_db, 0.0, 1.0)


def decompress(values: Any, profile: FeatureProfile) -> Any:
    """Inverse of :func:`compress` (exact except where compress clamped or clipped)."""
    p = profile
    if _is_tensor(values):
        import torch

        if p.log == "ln":
            return torch.exp(values)
        s = values * -p.min_level_db + p.min_level_db + p.ref_level_db
        return torch.pow(10.0, s * (p.power / 20.0))
    v = np.asarray(values)
    if p.log == "ln":
        return np.exp(v)
    s = v * -p.min_level_db + p.min_level_db + p.ref_level_db
    return np.power(10.0, s * (p.power / 20.0))


def silence_value(profile: FeatureProfile) -> float:
    """The feature value of digital silence: ln(clamp_min) for "ln", 0 for "db"."""
    return float(compress(np.float64(0.0), profile))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


# ------------------------------------------------------------------------------- compatibility
class FeatureMismatchError(ValueError):
    """A mel made with one profile met a model or tool that expects another.

    ``differences``: {field: (mel's value, model's value)}; ``convertible``: whether
    :func:`convert_mel` can convert it (otherwise recompute the mel from audio).
    """

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]], convertible: bool) -> None:
        super().__init__(message)
        self.differences = differences
        self.convertible = convertible


# Fields that define the STFT frames: a mel cannot be converted across them, only recomputed.
STFT_FIELDS = ("sample_rate", "hop_length", "n_fft", "win_length", "center")
# Fields that define the filterbank: convertible (approximately) through the linear spectrogram.
FILTERBANK_FIELDS = ("n_mels", "fmin", "fmax", "mel_scale", "mel_norm", "power")
# Fields that define the value scale: convertible numerically.
SCALE_FIELDS = ("log", "clamp_min", "ref_level_db", "min_level_db")


def _effective(p: FeatureProfile) -> dict[str, Any]:
    d = p.to_dict()
    d.pop("name")
    if p.log != "db":  # unused by natural-log profiles
        d["ref_level_db"] = d["min_level_db"] = None
    return d


def profile_differences(a: FeatureProfile, b: FeatureProfile) -> dict[str, tuple[Any, Any]]:
    """{field: (a's value, b's value)} for every field that changes the features (the name does not)."""
    da, db = _effective(a), _effective(b)
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def _mismatch(mel_profile: FeatureProfile, model_profile: FeatureProfile) -> FeatureMismatchError | None:
    diffs = profile_differences(mel_profile, model_profile)
    if not diffs:
        return None
    listed = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in diffs.items())
    stft = [k for k in diffs if k in STFT_FIELDS]
    head = f"mel features made with profile {mel_profile.name!r} do not match profile {model_profile.name!r} ({listed})"
    if stft:
        advice = (
            f"they differ in {', '.join(stft)}, so they cannot be converted: recompute the mel from the "
            f"audio with the model's profile {model_profile.name!r}"
        )
    elif any(k in FILTERBANK_FIELDS for k in diffs):
        advice = "convert_mel() can convert them approximately (through the linear spectrogram)"
    else:
        advice = "convert_mel() can convert them (a change of scale)"
    return FeatureMismatchError(f"{head}; {advice}", diffs, convertible=not stft)


def check_compatible(mel_profile: FeatureProfile, model_profile: FeatureProfile) -> None:
    """Return quietly when the profiles make the same features, else raise :class:`FeatureMismatchError`
    naming every differing field and saying whether :func:`convert_mel` can help."""
    err = _mismatch(mel_profile, model_profile)
    if err is not None:
        raise err


def convert_mel(mel: Any, from_profile: FeatureProfile, to_profile: FeatureProfile) -> Any:
    """Convert mel features ([n_mels, frames] or [B, n_mels, frames], numpy or torch) between profiles.

    Same STFT and filterbank, different scale (ln ↔ dB-normalised, clamp, ref/min level): exact except
    where a range was clipped. Different filterbank (n_mels, fmin, fmax, scale, norm, power) with the same
    STFT: through a non-negative least-squares estimate of the linear spectrogram (approximate: detail
    finer than the source bands is lost, bands outside the source's fmin–fmax come out empty). Different
    sample rate, hop, n_fft, window or framing: :class:`FeatureMismatchError`. Identical profiles return
    ``mel`` itself. The result has the input's kind, dtype float32 (tensor on the input's device).
    """
    err = _mismatch(from_profile, to_profile)
    if err is None:
        return mel
    if not err.convertible:
        raise err
    was_tensor = _is_tensor(mel)
    device = mel.device if was_tensor else None
    values = mel.detach().cpu().numpy() if was_tensor else np.asarray(mel)
    if values.ndim not in (2, 3) or values.shape[-2] != from_profile.n_mels:
        raise ValueError(
            f"mel must be [{from_profile.n_mels}, frames] or [B, {from_profile.n_mels}, frames] for profile "
            f"{from_profile.name!r}, got shape {values.shape}"
        )
    energies = decompress(values.astype(np.float64), from_profile)
    if any(k in FILTERBANK_FIELDS for k in err.differences):
        from studio.engine.audio.griffinlim import linear_from_mel_energies

        linear = linear_from_mel_energies(energies, from_profile)  # |STFT|^power_from
        magnitude = linear ** (1.0 / from_profile.power)
        energies = np.matmul(mel_filterbank(to_profile), magnitude**to_profile.power)
    out = compress(energies, to_profile).astype(np.float32)
    if was_tensor:
        import torch

        return torch.from_numpy(out).to(device)
    return out


_FRONT_END_NAMES = ("MelFrontEnd", "compute_mel")


def __getattr__(name: str) -> Any:
    """``MelFrontEnd`` and ``compute_mel`` from :mod:`studio.engine.audio.mel_frontend` (imports torch)."""
    if name in _FRONT_END_NAMES:
        from studio.engine.audio import mel_frontend

        return getattr(mel_frontend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
