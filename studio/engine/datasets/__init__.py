"""Preparation of real training data that installs offline (see /work/shared/DATA.md and docs/models.md).

- ``festvox``: Debian ``festvox-ru`` speech → trimmed, loudness-set FLAC + manifest with a fixed held-out split.
- ``music``: music21 corpus scores → MIDI → fluidsynth + a General MIDI soundfont → FLAC + manifest.
- ``manifest``: the prepared-set format that training and ``studio eval`` read.

Preparations install nothing: a missing source raises ``SourceMissingError`` naming the command
(``scripts/setup-data`` installs all of them). No Qt; everything runs in the caller's thread.
"""
