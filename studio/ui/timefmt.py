"""Formatting of times, levels and rates for readouts (pure functions)."""

from __future__ import annotations

import math


def format_time(seconds: float, millis: bool = True) -> str:
    """``MM:SS.mmm`` (or ``H:MM:SS.mmm`` from an hour on); negative times get a leading minus."""
    if not math.isfinite(seconds):
        return "--:--.---" if millis else "--:--"
    sign = "-" if seconds < 0 else ""
    total_ms = int(round(abs(seconds) * 1000))
    hours, rem = divmod(total_ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs, ms = divmod(rem, 1000)
    tail = f"{secs:02d}.{ms:03d}" if millis else f"{secs:02d}"
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{tail}"
    return f"{sign}{minutes:02d}:{tail}"


def format_db(db: float) -> str:
    if not math.isfinite(db) or db < -199:
        return "  -inf dB"
    return f"{db:6.1f} dB"


def format_hz(hz: float) -> str:
    if hz >= 1000:
        return f"{hz / 1000:.2f} kHz"
    return f"{hz:.0f} Hz"


def amplitude_db(value: float) -> float:
    """20·log10(|value|), -inf for 0."""
    value = abs(float(value))
    return 20.0 * math.log10(value) if value > 0 else float("-inf")
