"""Waveform Studio: a desktop studio for neural waveform models (WaveNet, WaveRNN, WaveGlow).

Layers (imports point down only): ``studio.ui`` (Qt widgets) → ``studio.workers`` (QThread workers,
the only place Qt meets the engine) → ``studio.engine`` (headless: audio I/O, features, models,
checkpoints, training). ``studio.cli`` drives the same engine without a window.
"""

__version__ = "0.1.0"
