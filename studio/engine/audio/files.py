"""Reading and writing audio files (WAV, FLAC, OGG/Vorbis, Opus, MP3) through soundfile/libsndfile.

Every function here runs in the caller's thread (a worker, never the audio callback) and returns float32
samples in [-1, 1]: ``[T]`` for mono, ``[T, C]`` (channels last) otherwise.

Everything a user can get wrong with a file raises a subclass of :class:`AudioFileError` whose message
names the file and says what to do; the fuzz tests hold every load of a damaged file to that contract.
libsndfile is defensive but not perfect, so this module adds its own checks:

* the file must exist, be a regular file and be non-empty before libsndfile sees it;
* a WAV whose ``data`` chunk claims more bytes than the file holds is reported as truncated
  (libsndfile silently shortens it);
* any format that decodes noticeably fewer frames than its header declares is reported as truncated;
* decoding reads in blocks, never trusting a header's frame count for an allocation;
* decoded samples that are NaN/inf (damaged float data) become 0 and out-of-range values are clipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import soundfile as sf

from studio.engine.audio.resample import resample

log = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
DEFAULT_BLOCK_FRAMES = 65_536
SILENCE_DBFS = float("-inf")

# Extension (or format name) → (libsndfile major format, default subtype).
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "oga": ("OGG", "VORBIS"),
    "vorbis": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
OPUS_SAMPLE_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
MP3_SAMPLE_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
_MAX_CHANNELS = {"MP3": 2, "FLAC": 8, "OGG": 8}
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
# Audio containers libsndfile cannot decode: named so the error says "convert it", not "not audio".
_UNSUPPORTED_AUDIO_EXTENSIONS = {
    "m4a", "aac", "mp4", "wma", "ape", "alac", "amr", "ac3", "mka", "webm", "mp2", "dts", "3gp",
}

# libsndfile's public error codes (sf_error): everything else is an internal code with its own message.
_SF_ERR_UNRECOGNISED_FORMAT = 1
_SF_ERR_SYSTEM = 2
_SF_ERR_MALFORMED_FILE = 3
_SF_ERR_UNSUPPORTED_ENCODING = 4


# --------------------------------------------------------------------------------------------- errors
class AudioFileError(Exception):
    """Base of every file problem a user can meet; ``path`` names the file."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None


class AudioFileNotFound(AudioFileError):
    """The path does not exist, is a directory, or cannot be opened for reading."""


class NotAudioError(AudioFileError):
    """The file is not in any format libsndfile recognises (a text file, an image, random bytes)."""


class UnsupportedCodecError(AudioFileError):
    """A container or codec that this build cannot decode or encode (AAC, WMA, MP3-in-WAV, …)."""


class EmptyAudioError(AudioFileError):
    """The file is zero bytes long or holds no audio frames."""


class BadSampleRateError(AudioFileError):
    """The header's sample rate is outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] — usually a damaged header."""


class CorruptAudioError(AudioFileError):
    """A recognised format whose header or data is damaged (the decoder gave up or produced garbage)."""


class TruncatedAudioError(CorruptAudioError):
    """The file ends before the audio its header declares (an interrupted copy or recording).

    ``frames_found`` and ``frames_declared`` (None where the format does not say, as in OGG) say how much
    is there; ``load(..., allow_truncated=True)``
    returns the part that is present.
    """

    def __init__(
        self, message: str, path: str | os.PathLike, frames_found: int, frames_declared: int | None
    ) -> None:
        super().__init__(message, path)
        self.frames_found = frames_found
        self.frames_declared = frames_declared


class AudioWriteError(AudioFileError):
    """A file could not be written (missing folder, no permission, disk full, encoder refused)."""


# ----------------------------------------------------------------------------------------------- info
@dataclass(frozen=True)
class AudioInfo:
    """What a file holds. ``frames``/``duration_s`` count decodable frames when ``stats`` were computed,
    else the header's claim. ``peak_dbfs``/``rms_dbfs`` are over all channels (−inf for digital silence,
    None when not computed); RMS is relative to a full-scale square wave, so a full-scale sine reads
    −3.01 dBFS. ``nonfinite_samples`` counts NaN/inf samples in float data (they load as 0).
    """

    path: str
    format: str
    format_name: str
    subtype: str
    subtype_name: str
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    nonfinite_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: −inf dBFS becomes None."""
        d = asdict(self)
        for key in ("peak_dbfs", "rms_dbfs"):
            if d[key] is not None and not np.isfinite(d[key]):
                d[key] = None
        return d


def _dbfs(amplitude: float) -> float:
    return 20.0 * float(np.log10(amplitude)) if amplitude > 0 else SILENCE_DBFS


# ------------------------------------------------------------------------------------------ opening
def _describe(path: str) -> str:
    return repr(os.fspath(path))


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise AudioFileNotFound(f"{_describe(path)} does not exist: check the path and the file name", path)
    if os.path.isdir(path):
        raise AudioFileNotFound(f"{_describe(path)} is a folder, not an audio file: choose a file inside it", path)
    if not os.access(path, os.R_OK):
        raise AudioFileNotFound(f"{_describe(path)} cannot be read (permission denied): check its permissions", path)
    if os.path.getsize(path) == 0:
        raise EmptyAudioError(f"{_describe(path)} is empty (0 bytes): record or export it again", path)


def _extension(path: str) -> str:
    return os.path.splitext(os.fspath(path))[1].lower().lstrip(".")


def _translate_error(path: str, exc: Exception, during: str) -> AudioFileError:
    """Map a soundfile/libsndfile failure to the typed error a user should see."""
    code = getattr(exc, "code", None)
    detail = getattr(exc, "error_string", None) or str(exc)
    detail = " ".join(detail.replace("Error :", "").split()).strip().rstrip(".")
    ext = _extension(path)
    where = _describe(path)
    if code == _SF_ERR_UNRECOGNISED_FORMAT:
        if ext in _UNSUPPORTED_AUDIO_EXTENSIONS:
            return UnsupportedCodecError(
                f"{where}: .{ext} files cannot be decoded here; convert it to WAV or FLAC "
                f"(e.g. `ffmpeg -i in.{ext} out.wav`)",
                path,
            )
        return NotAudioError(
            f"{where} is not an audio file libsndfile recognises ({detail}); "
            "use WAV, FLAC, OGG/Vorbis, Opus or MP3",
            path,
        )
    low = detail.lower()
    if code == _SF_ERR_UNSUPPORTED_ENCODING or "unsupported" in low or "not supported" in low or "unimplemented" in low:
        return UnsupportedCodecError(
            f"{where} uses an encoding this build cannot {during} ({detail}); "
            "convert it to 16-bit PCM WAV or FLAC (e.g. with sox or ffmpeg)",
            path,
        )
    if code == _SF_ERR_SYSTEM:
        return AudioFileNotFound(f"{where} could not be opened ({detail}): check the path and permissions", path)
    return CorruptAudioError(
        f"{where} is damaged or cut short ({detail}); re-export or re-copy it from the original",
        path,
    )


def _bad_rate(path: str, rate: int) -> BadSampleRateError:
    return BadSampleRateError(
        f"{_describe(path)} declares a sample rate of {rate} Hz, outside "
        f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz: the header is probably damaged; re-export the file",
        path,
    )


def _riff_declared_rate(path: str) -> int | None:
    """The sample rate field of a RIFF/RF64 WAV's ``fmt `` chunk, read directly (libsndfile refuses to
    open a WAV whose rate does not fit its signed 32-bit field, e.g. 0 or ≥ 2³¹, with a generic error);
    None for other files or when there is no such chunk in the first 64 KiB."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65_536)
    except OSError:
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt ":
            return struct.unpack_from("<I", head, pos + 12)[0] if pos + 16 <= len(head) else None
        pos += 8 + size + (size & 1)
    return None


def _check_header(path: str, f: sf.SoundFile) -> None:
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise _bad_rate(path, f.samplerate)
    if f.channels < 1:
        raise CorruptAudioError(f"{_describe(path)} declares {f.channels} channels: the header is damaged", path)


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[sf.SoundFile]:
    path = os.fspath(path)
    _check_path(path)
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
        rate = _riff_declared_rate(path)
        if rate is not None and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise _bad_rate(path, rate) from exc
        raise _translate_error(path, exc, "decode") from exc
    try:
        _check_header(path, f)
        yield f
    finally:
        f.close()


def _wav_data_shortfall(path: str, f: sf.SoundFile) -> tuple[int, int] | None:
    """For a RIFF WAV, (frames present, frames the data chunk declares) when the file is cut short."""
    if f.format not in ("WAV", "WAVEX"):
        return None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            block_align = 0
            for _ in range(64):  # a real WAV has a handful of chunks before "data"
                fh.seek(pos)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(16)
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    if csize in (0, 0xFFFFFFFF) or block_align <= 0:  # streamed/unknown length
                        return None
                    available = size - (pos + 8)
                    if csize <= available:
                        return None
                    return max(available, 0) // block_align, csize // block_align
                pos += 8 + csize + (csize & 1)
                if pos >= size:
                    return None
    except OSError:
        return None
    return None


_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _ogg_truncated(path: str) -> bool:
    """True when an OGG file's last page is incomplete or lacks the end-of-stream flag.

    libsndfile measures an OGG file by its last complete page, so a cut-off file otherwise looks whole.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            start = max(0, size - _OGG_MAX_PAGE - 4096)
            fh.seek(start)
            tail = fh.read()
    except OSError:
        return False
    j = len(tail)
    while True:
        j = tail.rfind(b"OggS", 0, j)
        if j < 0:
            return False  # no page header in the tail: nothing to judge by
        if j + 27 <= len(tail) and tail[j + 4] != 0:
            continue  # "OggS" inside packet data, not a page header (stream structure version must be 0)
        if j + 27 > len(tail):
            return True  # the last page header itself is cut
        flags, nsegs = tail[j + 5], tail[j + 26]
        table = tail[j + 27 : j + 27 + nsegs]
        if len(table) < nsegs:
            return True
        end = j + 27 + nsegs + sum(table)
        if end > len(tail):
            return True  # the last page's body is cut
        return not flags & 0x04


def _truncation_error(path: str, sr: int, found: int, declared: int | None) -> TruncatedAudioError:
    if declared is None:
        return TruncatedAudioError(
            f"{_describe(path)} is cut short: its audio stops after {found / sr:.2f} s without the "
            "end-of-stream marker (an interrupted copy or recording?); re-copy it, or load it with "
            "allow_truncated=True to use the part that is there",
            path,
            found,
            None,
        )
    return TruncatedAudioError(
        f"{_describe(path)} is cut short: it holds {found / sr:.2f} s of the {declared / sr:.2f} s its header "
        "declares (an interrupted copy or recording?); re-copy it, or load it with allow_truncated=True "
        "to use the part that is there",
        path,
        found,
        declared,
    )


def _shortfall_is_truncation(found: int, declared: int) -> bool:
    # MP3 headers estimate their length; allow two MPEG frames or 1 % of slack before calling it truncated.
    return declared > 0 and declared - found > max(2 * 1152, declared // 100)


def _sanitize(block: np.ndarray, clip: bool, counters: dict[str, int]) -> np.ndarray:
    finite = np.isfinite(block)
    if not finite.all():
        counters["nonfinite"] += int(block.size - np.count_nonzero(finite))
        block = np.where(finite, block, np.float32(0.0))
    if clip:
        over = np.abs(block) > 1.0
        if over.any():
            counters["clipped"] += int(np.count_nonzero(over))
            block = np.clip(block, -1.0, 1.0)
    return block


def _decode_blocks(
    path: str,
    f: sf.SoundFile,
    block_frames: int,
    allow_truncated: bool,
    clip: bool,
    counters: dict[str, int] | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 [n, C] blocks; raises typed errors for damage found while decoding.

    ``counters`` (if given) receives "nonfinite" and "clipped" sample counts.
    """
    if counters is None:
        counters = {}
    counters.update(nonfinite=0, clipped=0)
    found = 0
    while True:
        try:
            block = f.read(block_frames, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, ValueError, OverflowError, MemoryError) as exc:
            err = _translate_error(path, exc, "decode")
            if found and isinstance(err, CorruptAudioError) and not isinstance(err, TruncatedAudioError):
                err = CorruptAudioError(
                    f"{_describe(path)} is damaged or cut short after {found / f.samplerate:.2f} s "
                    f"({err.args[0].split('(', 1)[-1].split(')', 1)[0]}); re-export or re-copy it",
                    path,
                )
            raise err from exc
        if block.shape[0] == 0:
            break
        found += block.shape[0]
        yield _sanitize(block, clip, counters)
    if counters["nonfinite"] or counters["clipped"]:
        log.warning(
            "%s: %d non-finite samples replaced by 0, %d samples beyond full scale clipped",
            path,
            counters["nonfinite"],
            counters["clipped"],
        )
    declared = f.frames
    short = _wav_data_shortfall(path, f)
    if short is not None:
        found_wav, declared = short
        if not allow_truncated:
            raise _truncation_error(path, f.samplerate, found_wav, declared)
    elif allow_truncated:
        return
    elif _shortfall_is_truncation(found, declared):
        raise _truncation_error(path, f.samplerate, found, declared)
    elif f.format == "OGG" and _ogg_truncated(path):
        raise _truncation_error(path, f.samplerate, found, None)


def _map_channels(x: np.ndarray, mono: bool, channels: int | None) -> np.ndarray:
    """[n, C] → [n] (mono or channels=1), [n, C] as is (mono=False), or [n, channels]."""
    if channels is None:
        if not mono:
            return x
        channels = 1
    if channels < 1:
        raise ValueError(f"channels must be >= 1 or None, got {channels}")
    if channels == 1:
        return x[:, 0].copy() if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    if x.shape[1] == channels:
        return x
    # Duplicate mono, or flatly downmix other layouts to mono first.
    src = x[:, :1] if x.shape[1] == 1 else x.mean(axis=1, keepdims=True, dtype=np.float32)
    return np.repeat(src, channels, axis=1)


# ------------------------------------------------------------------------------------------ reading
def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    *,
    channels: int | None = None,
    allow_truncated: bool = False,
    clip: bool = True,
) -> tuple[np.ndarray, int]:
    """Decode a whole file; returns ``(audio, sample_rate)``.

    audio: float32, ``[T]`` with ``mono`` or ``channels=1``, else ``[T, C]`` (also for C = 1).
    ``channels`` (if given) overrides
    ``mono``: 1 averages all channels, 2 (or more) duplicates a mono file or keeps a file that already
    has that many channels (other layouts are averaged, then duplicated). ``mono=False`` with no
    ``channels`` keeps the file's own channels. ``sample_rate`` resamples with soxr HQ.
    ``clip`` limits samples to [-1, 1] (NaN/inf always become 0). Raises :class:`AudioFileError`
    subclasses for every file problem; ``ValueError`` only for bad arguments.
    """
    path = os.fspath(path)
    if sample_rate is not None and not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be in {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    with _open(path) as f:
        sr = f.samplerate
        blocks = list(_decode_blocks(path, f, DEFAULT_BLOCK_FRAMES, allow_truncated, clip))
    if not blocks:
        raise EmptyAudioError(f"{_describe(path)} holds no audio frames: record or export it again", path)
    audio = _map_channels(np.concatenate(blocks, axis=0), mono, channels)
    if sample_rate is not None and int(sample_rate) != sr:
        audio = resample(audio, sr, int(sample_rate))
        if clip:
            np.clip(audio, -1.0, 1.0, out=audio)
        sr = int(sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32), sr


def iter_blocks(
    path: str | os.PathLike,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    mono: bool = True,
    *,
    channels: int | None = None,
    allow_truncated: bool = False,
    clip: bool = True,
) -> Iterator[np.ndarray]:
    """Stream a long file as float32 blocks of at most ``block_frames`` frames ([n] or [n, C] as in
    :func:`load`), at the file's own rate (see ``resample.StreamResampler``). The file is opened on the
    first ``next()`` and closed when the generator ends or is closed; errors are the same typed
    :class:`AudioFileError` subclasses as :func:`load` (a truncation is raised after the last block).
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    path = os.fspath(path)
    with _open(path) as f:
        any_frames = False
        for block in _decode_blocks(path, f, int(block_frames), allow_truncated, clip):
            any_frames = True
            yield _map_channels(block, mono, channels)
    if not any_frames:
        raise EmptyAudioError(f"{_describe(path)} holds no audio frames: record or export it again", path)


def info(path: str | os.PathLike, stats: bool = True, block_frames: int = DEFAULT_BLOCK_FRAMES) -> AudioInfo:
    """Describe a file. With ``stats`` (default) every frame is decoded, block by block (constant memory,
    so an hour-long file is fine), to count frames and measure peak and RMS dBFS; a damaged or truncated
    file raises like :func:`load`. Without ``stats`` only the header is read (fast).
    """
    path = os.fspath(path)
    with _open(path) as f:
        base = {
            "path": path,
            "format": f.format,
            "format_name": f.format_info,
            "subtype": f.subtype,
            "subtype_name": f.subtype_info,
            "sample_rate": int(f.samplerate),
            "channels": int(f.channels),
        }
        if not stats:
            if f.frames <= 0:
                raise EmptyAudioError(f"{_describe(path)} holds no audio frames: record or export it again", path)
            return AudioInfo(**base, frames=int(f.frames), duration_s=f.frames / f.samplerate)
        frames = 0
        peak = 0.0
        sum_sq = 0.0
        counters: dict[str, int] = {}
        for block in _decode_blocks(path, f, block_frames, allow_truncated=False, clip=False, counters=counters):
            frames += block.shape[0]
            peak = max(peak, float(np.max(np.abs(block))))
            sum_sq += float(np.sum(np.square(block, dtype=np.float64)))
    if frames == 0:
        raise EmptyAudioError(f"{_describe(path)} holds no audio frames: record or export it again", path)
    rms = float(np.sqrt(sum_sq / (frames * base["channels"])))
    return AudioInfo(
        **base,
        frames=frames,
        duration_s=frames / base["sample_rate"],
        peak_dbfs=_dbfs(peak),
        rms_dbfs=_dbfs(rms),
        nonfinite_samples=counters["nonfinite"],
    )


# ------------------------------------------------------------------------------------------ writing
def _resolve_format(path: str, format: str | None, subtype: str | None) -> tuple[str, str]:
    key = (format or _extension(path)).lower().lstrip(".")
    if key not in _WRITE_FORMATS:
        raise ValueError(
            f"cannot tell which format to write {_describe(path)} in: use a .wav, .flac, .ogg, .opus or .mp3 "
            f"extension or pass format= one of {sorted(_WRITE_FORMATS)}"
        )
    major, default_subtype = _WRITE_FORMATS[key]
    sub = (subtype or default_subtype).upper()
    if not sf.check_format(major, sub):
        raise UnsupportedCodecError(
            f"cannot write {_describe(path)}: {major} does not take subtype {sub}; "
            f"choose one of {sorted(sf.available_subtypes(major))}",
            path,
        )
    return major, sub


def _nearest_allowed_rate(rate: int, allowed: tuple[int, ...]) -> int:
    """The smallest allowed rate that keeps the whole band, else the highest allowed rate."""
    for r in allowed:
        if r >= rate:
            return r
    return allowed[-1]


def _file_mode_for(path: str) -> int:
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = 0o022
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def save(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    format: str | None = None,
    subtype: str | None = None,
) -> int:
    """Write ``audio`` (float [T] or [T, C], samples in [-1, 1]) atomically; returns the rate written.

    The format comes from ``format`` or the extension: wav (PCM_16), flac (PCM_16), ogg (Vorbis),
    opus (Opus in OGG), mp3 (MPEG layer III); ``subtype`` overrides the encoding (e.g. "FLOAT", "PCM_24").
    Opus only takes 8/12/16/24/48 kHz and MP3 only the MPEG rates: other rates are resampled (soxr HQ)
    to the next higher allowed rate, which is returned and logged. Samples are clipped to [-1, 1]
    except for float subtypes. The file is written to a temporary file in the same folder and moved
    into place with ``os.replace``, so readers never see half a file.
    """
    path = os.fspath(path)
    major, sub = _resolve_format(path, format, subtype)
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] < 1):
        raise ValueError(f"audio must be [T] or [T, C], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"audio for {_describe(path)} contains NaN or inf samples; refusing to write it")
    channels = 1 if x.ndim == 1 else x.shape[1]
    if channels > _MAX_CHANNELS.get(major, 1024):
        raise UnsupportedCodecError(
            f"cannot write {_describe(path)}: {major} takes at most {_MAX_CHANNELS[major]} channels, "
            f"got {channels}; downmix first or use WAV",
            path,
        )
    sr = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be in {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    allowed = OPUS_SAMPLE_RATES if sub == "OPUS" else MP3_SAMPLE_RATES if major == "MP3" else None
    if allowed is not None and sr not in allowed:
        target = _nearest_allowed_rate(sr, allowed)
        log.info("%s: %s cannot store %d Hz; resampling to %d Hz", path, sub, sr, target)
        x = resample(x, sr, target)
        sr = target
    if sub not in _FLOAT_SUBTYPES:
        x = np.clip(x, -1.0, 1.0)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise AudioWriteError(f"cannot write {_describe(path)}: folder {folder!r} does not exist", path)
    mode = _file_mode_for(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise AudioWriteError(f"cannot write {_describe(path)}: {exc.strerror}", path) from exc
    os.close(fd)
    try:
        sf.write(tmp, x, sr, format=major, subtype=sub)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except (sf.SoundFileError, RuntimeError) as exc:
        _unlink_quietly(tmp)
        raise AudioWriteError(f"could not encode {_describe(path)} as {major}/{sub}: {exc}", path) from exc
    except OSError as exc:
        _unlink_quietly(tmp)
        raise AudioWriteError(f"could not write {_describe(path)}: {exc.strerror or exc}", path) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return sr


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
