"""Small reusable widgets: level meters, device pickers."""
