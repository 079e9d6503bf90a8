"""What the dump pipeline writes into while its S3 parts go up (backup.storage.s3_stream): the
spool file, which hashes and sends each part it completes, or SPOOL_MODE=stream's part buffers.
"""

from __future__ import annotations

import hashlib
import os
import queue
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from backup.storage.s3_multipart import PartHashes

if TYPE_CHECKING:
    from backup.storage.s3_stream import PartStreamer

# Parts of SPOOL_MODE=stream held in memory while they are sent (besides the one filling), cut
# at the smallest size that fits BACKUP_MAX_BYTES in 10,000 parts (5 MiB up to 48 GiB), not
# S3_PART_SIZE_MIB: 3 x 16 MiB took the worker to 251 MB RSS at 1 GB, 3 x 5 MiB stays near 200.
STREAM_PARTS_IN_FLIGHT = 2
WAIT_SECONDS = 1.0  # how often a wait for a free buffer checks for a failed part


class SpoolParts:
    """The spool file as the pipeline writes it. Each part is hashed (MD5, and SHA-256 for
    S3_CHECKSUMS) from the bytes as they are written, the very bytes the manifest's SHA-256
    covers, so the spool is not read back to hash it; once complete, the part is flushed,
    its disk writeback started, and it is sent (read back from the page cache)."""

    def __init__(self, file: BinaryIO, streamer: PartStreamer) -> None:
        self._file, self._streamer = file, streamer
        self.size = 0
        self._boundary = streamer.part_size
        self._sha256 = streamer.storage.checksums
        self._md5_of_part, self._sha256_of_part = hashlib.md5(), hashlib.sha256()
        self._hashed = 0  # bytes of the part being written that are hashed

    def write(self, data: bytes, /) -> int:
        written = self._file.write(data)
        if not self._streamer.failed:  # else the upload step hashes the spool file itself
            self._hash(memoryview(data)[:written])
        self.size += written
        if self.size > self._boundary:
            self._file.flush()
            _start_writeback(self._file, self._boundary - self._streamer.part_size)
            self._streamer.grown(Path(self._file.name), self.size)
            # Past the part after the last one sent; nothing more to send once a part failed.
            ahead = self._streamer._next * self._streamer.part_size
            self._boundary = ahead if not self._streamer.failed else 1 << 62
        return written

    def _hash(self, view: memoryview) -> None:
        part_size = self._streamer.part_size
        while view:
            chunk, view = view[: part_size - self._hashed], view[part_size - self._hashed :]
            self._md5_of_part.update(chunk)
            if self._sha256:
                self._sha256_of_part.update(chunk)
            self._hashed += len(chunk)
            if self._hashed == part_size:
                self.end_part()

    def end_part(self) -> None:
        """The part being written is complete (or, at the end, the last one): hand over its
        hashes. Nothing when it is empty."""
        if self._hashed:
            sha256 = self._sha256_of_part.digest() if self._sha256 else None
            self._streamer.hashed(PartHashes(self._hashed, self._md5_of_part.digest(), sha256))
        self._md5_of_part, self._sha256_of_part = hashlib.md5(), hashlib.sha256()
        self._hashed = 0

    def flush(self) -> None:
        self._file.flush()


def _start_writeback(file: BinaryIO, offset: int) -> None:
    """Start writing a completed part to disk now, so the fsync at the end of the dump has
    little left (it waited 0.2 s for a 165 MB artifact). Linux's POSIX_FADV_DONTNEED on dirty
    pages starts their writeback without waiting, and keeps them cached while they are
    being written (PostgreSQL's pg_flush_data does the same where it lacks sync_file_range)."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(file.fileno(), offset, 0, os.POSIX_FADV_DONTNEED)


class MemoryParts:
    """SPOOL_MODE=stream's sink: bytes fill a part buffer, which is sent once it is full and more
    follows (so the last part is never empty). Buffers are reused, STREAM_PARTS_IN_FLIGHT + 1
    of them at most: a new 16 MiB object per part stayed in malloc's arenas (294 MB RSS at
    1 GB). The first one grows with the data, so a tiny dump does not touch 16 MiB."""

    def __init__(self, streamer: PartStreamer) -> None:
        self._streamer = streamer
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._made = 1
        self.current = bytearray()
        self.filled = 0

    @property
    def rest(self) -> memoryview:
        return memoryview(self.current)[: self.filled]

    def write(self, data: bytes, /) -> int:
        view, size = memoryview(data), self._streamer.part_size
        while view:
            if self.filled == size:  # full, and more follows: send it
                self._send()
            n = min(len(view), size - self.filled)
            if len(self.current) == self.filled:  # the first buffer, still growing
                self.current += view[:n]
            else:
                self.current[self.filled : self.filled + n] = view[:n]
            self.filled += n
            view = view[n:]
        return len(data)

    def _send(self) -> None:
        buffer = self.current
        self._streamer.send(self.rest, lambda: self._free.put(buffer))
        self.current, self.filled = self._take(), 0

    def _take(self) -> bytearray:
        if self._made <= STREAM_PARTS_IN_FLIGHT:
            self._made += 1
            return bytearray(self._streamer.part_size)
        # Every buffer is in flight: wait for a part to finish (a failed one stops the dump;
        # the activity's event loop heartbeats meanwhile).
        while True:
            try:
                return self._free.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                self._streamer._raise_failure()

    def flush(self) -> None:
        return None
