"""Time-aligned audio views: waveform (min/max pyramid), spectrogram, and the stack that links them."""
