"""The last stage of a folded generation (WaveNet and WaveRNN): the joined audio, streamed in blocks.

A folded generation streams segment 0 while it steps, then joins all segments once the steps are done;
what segment 0 did not already send goes out from the joined audio. Threads: the generating thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.models.base import GenerateRequest
    from studio.engine.models.distribution import DistributionTap


def stream_joined(
    joined: torch.Tensor,
    sent: int,
    total: int,
    block: int,
    request: GenerateRequest,
    tap: DistributionTap | None,
) -> Iterator[torch.Tensor]:
    """Yield ``joined[sent:total]`` (the joined audio, 1-D samples) in ``block``-sized pieces, stopping
    after the piece during which ``request`` is cancelled.

    The distribution rows still held by ``tap`` (segment 0's last own samples) are handed over first,
    so they go with the first joined block.
    """
    if tap is not None:
        tap.flush(total)
    for lo in range(sent, total, block):
        yield joined[lo : lo + block]
        if request.cancelled:
            return
