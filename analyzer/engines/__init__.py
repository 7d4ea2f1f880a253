"""Garbage collectors, one folder each (`distribution/`, `digitalocean/`): a model of what the
collector marks and sweeps, a runner that starts and follows the real one, and what else it
needs (an output parser, an API client). `registry` names them; `spec` says what each provides;
`base` is the runner interface.

This file imports nothing: importing one engine's client (a scan) must not load every model.
"""
