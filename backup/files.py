"""Files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from backup.layout import PARTIAL_SUFFIX


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Write to `<target>.partial`, fsync, then rename over `target`; on any failure the
    partial file is removed, so readers and retries never see half an artifact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        with partial.open("wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def link_atomically(source: Path, target: Path) -> bool:
    """Make `target` another name of `source` (a hard link), appearing whole like
    atomic_file's output; False where a link can not be made (another file system, or one
    without hard links). Only for a file never written again: the two names share its bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        return False
    try:
        partial.replace(target)
    finally:
        # Renaming a link over another link of the same file (a retry) does nothing.
        partial.unlink(missing_ok=True)
    return True


def sha256_of(path: Path, chunk_size: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
