"""Safe checkpoints: weights in safetensors, the model card in JSON, never a pickle executed.

A checkpoint called ``NAME`` is up to three files side by side:

- ``NAME.safetensors``: the model's ``state_dict`` (float32, or float16 when saved ``half=True`` for
  bundling; loading casts back to float32). Its header metadata carries the whole JSON document too,
  so this file alone is a complete, self-describing checkpoint.
- ``NAME.train.safetensors``: optional, for ``--resume``: a complete snapshot (float32 weights under
  ``model.*``, the optimizer's tensors, RNG state tensors, and the document with the training state's
  non-tensor structure in its header), so resuming never depends on two files agreeing.
- ``NAME.json``: format version, the ``ModelCard`` dict, a ``checkpoint_id`` tying the files together,
  and the training state's step, epoch and non-tensor fields. Catalogues read only this file.

Every file is written to a temporary name in the same folder, flushed to disk and renamed over the
old one (``os.replace`` is atomic), training snapshot first, weights next, JSON last. A reader
therefore never sees a half-written file; if a writer dies between two renames, the weights file
(newer) wins over the JSON (older), because the weights file holds its own copy of the document, and
a resume uses the training snapshot, which is complete in itself.

Other projects' ``.pt``/``.pth``/``.ckpt`` files are read only through ``read_pickled_tensors``,
which rebuilds tensors and plain containers and refuses anything else (no code runs).

All functions here run on the calling thread and touch only the files they are given.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import uuid
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.engine.checkpoint_documents import (  # noqa: F401 (re-exported: the public names of checkpoints)
    FORMAT_NAME,
    FORMAT_VERSION,
    JSON_SUFFIX,
    PICKLE_SUFFIXES,
    TRAIN_SUFFIX,
    WEIGHTS_SUFFIX,
    CheckpointError,
    CheckpointPaths,
    UnsafeCheckpointError,
    card_from_document,
    check_document,
    read_document,
)
from studio.engine.models.base import ModelCard, WaveformModel, build_model, get_family
from studio.engine.storage import atomic_write_bytes

log = logging.getLogger(__name__)

_METADATA_KEY = "waveform_studio"
_RESUME_WEIGHTS_PREFIX = "model."


@dataclass
class TrainingState:
    """What ``--resume`` needs besides the weights.

    step, epoch: counters of the run so far. optimizer: ``optimizer.state_dict()`` (tensors are stored
    in ``NAME.train.safetensors``, the rest in JSON). rng: named RNG state tensors (e.g.
    ``torch.get_rng_state()``), stored as uint8 tensors. extra: JSON-able run metadata (seed, options,
    losses, wall time so far...).
    """

    step: int
    epoch: int = 0
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# -- atomic writes ---------------------------------------------------------------------------------
# -- nested structures with tensors <-> JSON + flat tensor dict ---------------------------------------
_TENSOR_REF = "__tensor__"
_ITEMS = "__items__"


def split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace each tensor in a nested dict/list/tuple by a reference, collecting it in ``tensors``.

    Dicts with non-string keys (an optimizer's integer parameter ids) become ``{"__items__": [[k, v]]}``.
    Returns a JSON-able structure; ``join_tensors`` inverts it.
    """
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR_REF: key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and _TENSOR_REF not in obj and _ITEMS not in obj:
            return {k: split_tensors(v, f"{prefix}.{k}" if prefix else k, tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(f"cannot store a dict key of type {type(k).__name__} at '{prefix}'")
            items.append([k, split_tensors(v, f"{prefix}.{k}" if prefix else str(k), tensors)])
        return {_ITEMS: items}
    if isinstance(obj, list | tuple):
        return [split_tensors(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at '{prefix}' in a checkpoint (tensors and JSON only)")


def join_tensors(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of ``split_tensors``: put the tensors back where their references are."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_REF}:
            key = obj[_TENSOR_REF]
            if key not in tensors:
                raise CheckpointError(f"training state refers to tensor '{key}', which the file does not hold")
            return tensors[key]
        if set(obj) == {_ITEMS}:
            return {k: join_tensors(v, tensors) for k, v in obj[_ITEMS]}
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


# -- save ------------------------------------------------------------------------------------------
def _weights_for_saving(model: torch.nn.Module, half: bool) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors, tied (shared-storage) tensors copied apart."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        else:
            seen.add(key)
        out[name] = t
    return out


def _safetensors_bytes(tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata={_METADATA_KEY: json.dumps(document, sort_keys=True)})


def save_checkpoint(
    model: WaveformModel,
    path_stem: str | os.PathLike[str],
    training_state: TrainingState | None = None,
    *,
    half: bool = False,
) -> CheckpointPaths:
    """Write ``model`` (and optionally its training state) as checkpoint ``path_stem``, atomically.

    half: store floating-point weights as float16 (for bundled models: half the size; loading casts
    back to float32). Returns the paths written. A stale ``NAME.train.safetensors`` is removed when
    no training state is given, so a bundle never resumes from someone else's optimizer.
    """
    paths = CheckpointPaths.of(path_stem)
    card = model.card()
    checkpoint_id = uuid.uuid4().hex
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "checkpoint_id": checkpoint_id,
        "weights_dtype": "float16" if half else "float32",
        "card": card.to_dict(),
    }
    if training_state is not None:
        summary = {"step": int(training_state.step), "epoch": int(training_state.epoch), "extra": training_state.extra}
        document["training_state"] = summary
        train_tensors: dict[str, torch.Tensor] = {}
        full_state = {
            **summary,
            "optimizer": split_tensors(training_state.optimizer, "optimizer", train_tensors),
            "rng": split_tensors(dict(training_state.rng), "rng", train_tensors),
        }
        for name, tensor in _weights_for_saving(model, half=False).items():
            train_tensors[_RESUME_WEIGHTS_PREFIX + name] = tensor
        try:
            snapshot = _safetensors_bytes(train_tensors, {**document, "training_state": full_state})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"training state is not JSON-serialisable: {exc}") from exc
        atomic_write_bytes(paths.train, snapshot)
    atomic_write_bytes(paths.weights, _safetensors_bytes(_weights_for_saving(model, half), document))
    atomic_write_bytes(paths.json, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    if training_state is None and paths.train.exists():
        paths.train.unlink()
    log.debug("saved checkpoint %s (%s)", paths.stem, checkpoint_id)
    return paths


# -- read ------------------------------------------------------------------------------------------
def _open_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a safetensors file, with clear errors for damaged files."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise CheckpointError(f"{path}: weights file missing")
    size = path.stat().st_size
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: damaged or truncated safetensors file ({size} bytes): {exc}; save or download it again"
        ) from exc
    return tensors, metadata


def _document_of_weights(path: Path, metadata: Mapping[str, str]) -> dict[str, Any] | None:
    raw = metadata.get(_METADATA_KEY)
    if raw is None:
        return None
    try:
        return check_document(json.loads(raw), str(path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: damaged metadata header: {exc.msg}") from exc


def apply_state_dict(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``tensors`` into ``model`` after checking names, shapes and values; cast to the model's dtypes.

    A family's own ``load_state_dict`` pre-hooks (e.g. WaveGlow's folded/weight-normed layouts) still
    apply. Raises ``CheckpointError`` naming the missing/unexpected tensors or the tensor whose shape
    differs (expected and found).
    """
    expected = model.state_dict()
    prepared: dict[str, torch.Tensor] = {}
    for name, got in tensors.items():
        want = expected.get(name)
        if want is not None:
            if tuple(got.shape) != tuple(want.shape):
                raise CheckpointError(
                    f"{where}: tensor '{name}' has shape {tuple(got.shape)}, the model expects {tuple(want.shape)}"
                )
            if got.is_floating_point() != want.is_floating_point():
                raise CheckpointError(f"{where}: tensor '{name}' has dtype {got.dtype}, the model expects {want.dtype}")
            got = got.to(want.dtype)
        elif got.is_floating_point():
            got = got.float()
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{where}: tensor '{name}' holds NaN or Inf values")
        prepared[name] = got
    try:
        result = model.load_state_dict(prepared, strict=False)
    except RuntimeError as exc:  # a shape mismatch found only after a family's key adaptation
        details = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise CheckpointError(f"{where}: weights do not fit the model described by its card: {details}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        for label, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
            if keys:
                more = " ..." if len(keys) > 5 else ""
                parts.append(f"{label} {len(keys)} tensor(s): {', '.join(keys[:5])}{more}")
        raise CheckpointError(f"{where}: weights do not fit the model described by its card: {'; '.join(parts)}")


def _build(card: ModelCard, where: str, expect_family: str | None) -> WaveformModel:
    if expect_family is not None and card.family != expect_family:
        raise CheckpointError(f"{where}: this is a {card.family} checkpoint, not {expect_family}")
    try:
        get_family(card.family)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    try:
        model = build_model(card.family, dict(card.config), card.profile)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the {card.family} config in this checkpoint is not valid: {exc}") from exc
    model.name = card.name
    model.extra_card = {
        "description": card.description,
        "provenance": dict(card.provenance),
        "training": dict(card.training),
        "metrics": dict(card.metrics),
    }
    return model


def load_model(
    path: str | os.PathLike[str], *, family: str | None = None, device: str | torch.device = "cpu"
) -> WaveformModel:
    """Load checkpoint ``path`` (``NAME``, ``NAME.json`` or ``NAME.safetensors``) as a model in eval mode.

    family: when given, a checkpoint of another family is refused. The weights file's embedded
    document is authoritative; ``NAME.json`` is used when the weights file has none (older writers).
    Pickled files (``.pt``...) need a ``NAME.json`` next to them and are read by
    ``read_pickled_tensors``. Raises ``CheckpointError`` with a message naming the problem.
    """
    p = Path(path).expanduser()
    if p.suffix in PICKLE_SUFFIXES:
        return _load_pickled_with_card(p, family, device)
    paths = CheckpointPaths.of(p)
    if not paths.weights.exists() and not paths.json.exists():
        raise CheckpointError(f"{paths.stem}: no checkpoint here (looked for {paths.weights.name} and {paths.json.name})")
    tensors, metadata = _open_safetensors(paths.weights)
    document = _document_of_weights(paths.weights, metadata)
    if document is None:
        document = read_document(paths.stem)
    elif paths.json.exists():
        try:
            sidecar = read_document(paths.stem)
        except CheckpointError as exc:
            log.warning("%s; using the copy inside %s", exc, paths.weights.name)
        else:
            if sidecar.get("checkpoint_id") != document.get("checkpoint_id"):
                log.warning("%s is older than %s (interrupted save?); using the weights file's card", paths.json, paths.weights.name)
            else:
                _check_sidecar_family(sidecar, document, paths)
    where = str(paths.weights)
    card = card_from_document(document, where)
    model = _build(card, where, family)
    apply_state_dict(model, tensors, where)
    return model.to(device).eval()


def _check_sidecar_family(sidecar: dict[str, Any], document: dict[str, Any], paths: CheckpointPaths) -> None:
    """Refuse a ``NAME.json`` whose family contradicts the weights of the same save (an edited or
    swapped file): the catalogue lists models from the JSON, so loading must not quietly differ."""
    listed = sidecar["card"].get("family")
    actual = document["card"].get("family")
    if listed != actual:
        raise CheckpointError(
            f"{paths.json}: says family {listed!r} but {paths.weights.name} holds a {actual!r} model of the same "
            "save; the JSON was edited or belongs to another model: restore the original JSON next to the weights"
        )


def load_for_resume(
    path: str | os.PathLike[str], *, family: str | None = None, device: str | torch.device = "cpu"
) -> tuple[WaveformModel, TrainingState]:
    """The model (in train mode) and training state of checkpoint ``path``, for ``--resume``.

    Both come from ``NAME.train.safetensors`` alone, a complete snapshot written atomically, so a run
    killed at any moment resumes from a consistent step (the newest snapshot that was fully written,
    even if the inference weights next to it are one save older). Raises ``CheckpointError`` when
    there is no training state or it is damaged.
    """
    paths = CheckpointPaths.of(path)
    if not paths.train.exists():
        raise CheckpointError(f"{paths.stem}: no training state saved with this checkpoint; cannot resume (train afresh)")
    tensors, metadata = _open_safetensors(paths.train)
    where = str(paths.train)
    document = _document_of_weights(paths.train, metadata)
    state_doc = None if document is None else document.get("training_state")
    if state_doc is None:
        raise CheckpointError(f"{where}: no training state in this file; cannot resume (train afresh)")
    card = card_from_document(document, where)
    model = _build(card, where, family)
    weights = {k[len(_RESUME_WEIGHTS_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_RESUME_WEIGHTS_PREFIX)}
    apply_state_dict(model, weights, where)
    try:
        state = TrainingState(
            step=int(state_doc["step"]),
            epoch=int(state_doc.get("epoch", 0)),
            optimizer=join_tensors(state_doc.get("optimizer", {}), tensors),
            rng=join_tensors(state_doc.get("rng", {}), tensors),
            extra=dict(state_doc.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: damaged training state ({exc})") from exc
    return model.to(device).train(), state


def load_training_state(path: str | os.PathLike[str]) -> TrainingState:
    """Only the training state of checkpoint ``path`` (see ``load_for_resume``)."""
    return load_for_resume(path)[1]


# -- pickled files from other projects ----------------------------------------------------------------
REFUSED_MESSAGE = "refused: this file contains code/objects, not only tensors"


def read_pickled_tensors(path: str | os.PathLike[str]) -> Any:
    """Read a PyTorch pickle (``.pt``/``.pth``/``.ckpt``) rebuilding only tensors and plain containers.

    Uses ``torch.load(weights_only=True)``, whose unpickler accepts only tensors, storages, ordered
    dicts and primitive containers; anything else (a class, a function, ``os.system``) is refused with
    ``UnsafeCheckpointError`` before it could run. Returns the nested structure (usually a dict).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4" notes from old writers
            return torch.load(p, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first:
            # torch's message continues with advice to allow more globals; the one fact we keep is which.
            detail = _unsafe_detail(str(exc))
            raise UnsafeCheckpointError(f"{p}: {REFUSED_MESSAGE}{detail}") from None
        raise CheckpointError(f"{p}: damaged or not a PyTorch file ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: damaged or truncated PyTorch file ({first})") from None


def _unsafe_detail(message: str) -> str:
    """The line of torch's refusal that names what the file wanted to build (e.g. ``posix.system``)."""
    for line in message.splitlines():
        line = line.strip()
        if "GLOBAL" in line or line.startswith("WeightsUnpickler error:") or "Unsupported" in line:
            return f" ({line.removeprefix('WeightsUnpickler error:').strip()})"
    return ""


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested dict/list structure, keyed by its dotted path (``a.b.0.weight``)."""
    found: dict[str, torch.Tensor] = {}
    split_tensors(_only_tensor_leaves(obj), prefix, found)
    return found


def _only_tensor_leaves(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _only_tensor_leaves(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_only_tensor_leaves(v) for v in obj]
    return obj if isinstance(obj, torch.Tensor) else None


def _load_pickled_with_card(p: Path, family: str | None, device: str | torch.device) -> WaveformModel:
    sidecar = p.with_suffix(JSON_SUFFIX)
    if not sidecar.exists():
        raise CheckpointError(
            f"{p}: a pickled checkpoint without a studio card ({sidecar.name}); import it first "
            "(its family, config and feature profile must be known)"
        )
    document = read_document(sidecar)
    where = str(p)
    card = card_from_document(document, where)
    model = _build(card, where, family)
    raw = read_pickled_tensors(p)
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else raw
    tensors = flatten_tensors(state)
    apply_state_dict(model, tensors, where)
    return model.to(device).eval()

