"""The model families (WaveNet, WaveRNN, WaveGlow) behind one interface (``base``)."""
