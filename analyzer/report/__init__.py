"""Renderers: turn library results into text. Pure functions returning strings."""
