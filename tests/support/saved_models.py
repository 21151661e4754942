"""Models saved where the window's Models panel finds them, for the window tests that load one."""

from __future__ import annotations

from pathlib import Path

TINY_WAVENET = dict(
    n_mels=0, layers=4, dilation_cycle=4, residual_channels=8, gate_channels=16, skip_channels=8, cond_channels=0
)
"""An unconditional WaveNet of a few thousand parameters (untrained: it generates noise, quickly)."""


def save_tiny_wavenet(models_folder: Path) -> str:
    """Save an untrained ``TINY_WAVENET`` named "tiny-wavenet" (speech16k profile) in ``models_folder``
    (made if missing); returns the checkpoint's path."""
    from studio.engine.audio.features import PRESETS
    from studio.engine.checkpoints import save_checkpoint
    from studio.engine.models.base import build_model

    model = build_model("wavenet", TINY_WAVENET, PRESETS["speech16k"])
    model.name = "tiny-wavenet"
    models_folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, models_folder / "tiny-wavenet")
    return str(models_folder / "tiny-wavenet")
