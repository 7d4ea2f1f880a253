"""DigitalOcean Container Registry: its names and GC types, API client, writer, model and runner.

Kept empty: importing the client (a scan) must not load the model (and with it the analysis).
"""
