"""A directory as storage: the embedded default, and a mounted volume in production."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from backup.errors import StorageError
from backup.files import atomic_file
from backup.storage.base import ProgressCallback

CHUNK = 4 * 1024 * 1024


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key!r} escapes LOCAL_STORAGE_DIR")
        return path

    async def put(self, source: Path, key: str, on_progress: ProgressCallback) -> str:
        target = self.path_for(key)
        await asyncio.to_thread(_copy_atomically, source, target, on_progress)
        return target.as_uri()

    async def get(self, location: str, destination: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self._path_of(location), destination)

    async def delete(self, location: str) -> None:
        self._path_of(location).unlink(missing_ok=True)

    def _path_of(self, location: str) -> Path:
        parsed = urlparse(location)
        if parsed.scheme != "file":
            raise StorageError(f"{location!r} is not a file:// location of the local backend")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"{location!r} is outside LOCAL_STORAGE_DIR ({self.root})")
        return path


def _copy_atomically(source: Path, target: Path, on_progress: ProgressCallback) -> None:
    with source.open("rb") as src, atomic_file(target) as dst:
        copied = 0
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            copied += len(chunk)
            on_progress(copied)
