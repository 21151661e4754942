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


def save_tiny_waveglow(models_folder: Path, name: str, lpc_order: int = 0, projection: int | None = None) -> str:
    """Save an untrained two-flow WaveGlow ``name`` (speech16k profile; over the excitation of an
    order-``lpc_order`` linear prediction when > 0; with ``projection`` passes of spectral projection
    as its own setting) in ``models_folder``; returns the checkpoint's path."""
    from studio.engine.audio.features import PRESETS
    from studio.engine.checkpoints import save_checkpoint
    from studio.engine.models.base import build_model

    profile = PRESETS["speech16k"]
    config = dict(
        n_mels=profile.n_mels, n_flows=2, n_group=8, n_early_every=2, n_early_size=2, wn_layers=2, wn_channels=8,
        wn_kernel_size=3, upsample_window=profile.hop_length, lpc_order=lpc_order, spectral_projection=projection,
    )
    model = build_model("waveglow", config, profile)
    model.name = name
    models_folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, models_folder / name)
    return str(models_folder / name)


def load_in_window(qtbot, window, path: str, listed: int = 1):
    """Load the saved checkpoint ``path`` through the window's Models panel (Refresh, wait until the
    user group lists ``listed`` models, select, Load) and wait until it is the loaded model; returns it."""
    panel = window.models_panel
    panel.refresh_button.click()
    qtbot.waitUntil(lambda: panel.mine.childCount() == listed, timeout=10000)
    assert panel.select_path(path)
    panel.load_button.click()
    name = Path(path).name
    qtbot.waitUntil(lambda: window.model is not None and window.model.model.card().name == name, timeout=30000)
    return window.model.model
