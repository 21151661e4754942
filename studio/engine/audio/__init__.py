"""Audio files, resampling, mu-law, mel features, devices and real-time streams."""
