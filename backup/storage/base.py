"""The storage interface every backend (local, S3, Telegram) implements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

ProgressCallback = Callable[[int], None]


class Storage(Protocol):
    name: str

    async def put(self, source: Path, key: str, on_progress: ProgressCallback) -> str:
        """Store `source` under `key`, replacing what a previous attempt stored there, and return
        the artifact's location URI. Nothing is visible under `key` until it is complete."""
        ...

    async def get(self, location: str, destination: Path) -> None:
        """Fetch what `put` stored at `location` into `destination`."""
        ...

    async def delete(self, location: str) -> None: ...
