"""Qt widgets, windows and dialogs. Never does DSP or torch work itself."""
