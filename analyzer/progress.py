"""Progress reporting injected into library code; only the CLI draws anything."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def stage(self, name: str, total: int | None = None) -> None:
        """A new phase of work begins; `total` units are expected, or None when unknown."""

    def advance(self, n: int = 1) -> None:
        """`n` more units of the current phase are done."""


class NullProgress:
    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass
