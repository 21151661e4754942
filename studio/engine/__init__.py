"""Headless core of the studio. Nothing at or below this package imports Qt."""
