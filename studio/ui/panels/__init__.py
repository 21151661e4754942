"""The window's panels: models, generate, record, transport and view settings. Widgets only."""
