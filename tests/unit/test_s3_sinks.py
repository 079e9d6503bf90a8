"""The spool file's part cutting while the dump writes it (backup.storage.s3_sinks): each part's
hashes come from the bytes as written and equal those of the file's range the part is sent
from, whatever the write sizes, and a part is handed over only once it is complete."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any, cast

import pytest

from backup.storage.base import hash_range
from backup.storage.s3_multipart import PartHashes
from backup.storage.s3_sinks import SpoolParts

PART = 64 * 1024


class Streamer:
    """What SpoolParts sees of a PartStreamer: part size, failure, and the hand-overs."""

    def __init__(self, checksums: bool = True) -> None:
        self.part_size = PART
        self.failed: BaseException | None = None
        self.storage = type("Storage", (), {"checksums": checksums})()
        self.hashes: list[PartHashes] = []
        self.grown_at: list[tuple[int, int]] = []  # (file size, parts hashed by then)
        self._next = 1

    def hashed(self, part: PartHashes) -> None:
        self.hashes.append(part)

    def grown(self, path: Path, size: int) -> None:
        self.grown_at.append((size, len(self.hashes)))
        while size > self.part_size and self._next * self.part_size <= size:
            self._next += 1


def write_in_uneven_chunks(tmp_path: Path, streamer: Streamer, total: int) -> tuple[Path, bytes]:
    data = os.urandom(total)
    path = tmp_path / "artifact.partial"
    rng = random.Random(7)
    with path.open("wb") as file:
        sink = SpoolParts(file, cast(Any, streamer))
        at = 0
        while at < total:
            n = rng.choice([1, 100, 4096, PART - 1, PART, 3 * PART + 5])
            sink.write(data[at : at + n])
            at += n
        sink.flush()
        sink.end_part()
    return path, data


@pytest.mark.parametrize("total", [5 * PART, 5 * PART + 123, PART // 2])
def test_part_hashes_are_those_of_the_file_ranges(tmp_path: Path, total: int) -> None:
    streamer = Streamer()
    path, data = write_in_uneven_chunks(tmp_path, streamer, total)

    assert sum(p.length for p in streamer.hashes) == total
    for number, part in enumerate(streamer.hashes, start=1):
        offset = (number - 1) * PART
        length, md5, sha256 = hash_range(path, offset, min(PART, total - offset))
        assert (part.length, part.md5, part.sha256) == (length, md5, sha256)
        assert part.sha256 == hashlib.sha256(data[offset : offset + PART]).digest()
    # Every part the streamer was told about is complete and hashed by then.
    for size, hashed in streamer.grown_at:
        assert hashed >= size // PART


def test_without_s3_checksums_only_the_md5_is_taken(tmp_path: Path) -> None:
    streamer = Streamer(checksums=False)
    _, data = write_in_uneven_chunks(tmp_path, streamer, 2 * PART + 9)
    assert [p.sha256 for p in streamer.hashes] == [None, None, None]
    assert [p.md5 for p in streamer.hashes] == [
        hashlib.md5(data[i : i + PART]).digest() for i in range(0, len(data), PART)
    ]


def test_nothing_is_hashed_once_a_part_failed(tmp_path: Path) -> None:
    """The upload step then sends from the spool file and hashes it itself."""
    streamer = Streamer()
    streamer.failed = RuntimeError("part 1 failed")
    path, data = write_in_uneven_chunks(tmp_path, streamer, 3 * PART)
    assert streamer.hashes == []
    assert path.read_bytes() == data
