"""A few dozen Adam steps on random crops of one short signal: the loop the WaveRNN training tests
share (plain and LPC), so each test only says how it judges the loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def evenly_spaced_crops(signal: np.ndarray, length: int, count: int = 12) -> torch.Tensor:
    """``count`` crops of ``length`` samples spread evenly over ``signal`` ``[T]``: ``[count, length]``."""
    starts = np.linspace(0, len(signal) - length, count, dtype=int)
    return torch.from_numpy(np.stack([signal[i : i + length] for i in starts]))


def adam_steps_on_random_crops(
    model: torch.nn.Module,
    signal: np.ndarray,
    front: Callable[[torch.Tensor], torch.Tensor],
    *,
    length: int,
    steps: int = 60,
    batch: int = 16,
    lr: float = 5e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Train ``model`` in place for ``steps`` Adam steps (gradient norm clipped to 1.0), each on
    ``batch`` random crops of ``length`` samples of ``signal`` ``[T]`` with their features
    ``front(crops)``; the loss is ``model.training_loss(crops, features)``. Crop starts come from
    ``np.random.default_rng(seed)``. Returns the last batch of crops, ``[batch, length]``."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    crops = None
    for _ in range(steps):
        starts = rng.integers(0, len(signal) - length, batch)
        crops = torch.from_numpy(np.stack([signal[s : s + length] for s in starts]))
        loss = model.training_loss(crops, front(crops))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return crops


def adam_steps_on_batch(model: torch.nn.Module, audio: torch.Tensor, mel: torch.Tensor, *, steps: int = 30,
                        lr: float = 5e-3) -> list[float]:
    """Train ``model`` in place for ``steps`` Adam steps on one fixed batch (audio ``[B, T]``, its mel),
    no gradient clipping; returns each step's ``model.training_loss(audio, mel)`` before the update."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.training_loss(audio, mel)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def eval_loss(model: torch.nn.Module, audio: torch.Tensor, mel: torch.Tensor) -> float:
    """``model.training_loss(audio, mel)`` in eval mode without gradients; the model goes back to training."""
    model.eval()
    with torch.no_grad():
        loss = model.training_loss(audio, mel).item()
    model.train()
    return loss
