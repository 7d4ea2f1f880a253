"""Real garbage collectors behind one interface (see `base`): start, follow, outcome."""

from analyzer.engines.base import Engine, Identity, Run, run_engine
from analyzer.outcome import Outcome

__all__ = ["Engine", "Identity", "Outcome", "Run", "run_engine"]
