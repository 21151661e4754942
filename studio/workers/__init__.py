"""QObject workers on QThreads: the only place where Qt meets the engine."""
