"""Output side of the dump pipeline: compress → count and hash → file, in one pass.

Compression is the bottleneck of a schema dump (DESIGN.md), so zstd runs multi-threaded
inside libzstd while pg_dump itself writes uncompressed output. The directory format is the
exception: pg_dump -Fd -j compresses its own files, so the spool never holds them uncompressed.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import BinaryIO, Protocol

import zstandard

from backup.errors import BackupTooLarge
from backup.models import Compression

MIN_JOB = 1024 * 1024  # libzstd's own floor is 512 KiB


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def too_large(max_bytes: int) -> BackupTooLarge:
    return BackupTooLarge(
        f"the backup passed BACKUP_MAX_BYTES ({max_bytes} bytes) and was stopped; "
        "raise BACKUP_MAX_BYTES or compress the backup"
    )


class CappedHashingWriter:
    """Writes to a file while counting bytes and hashing them; stops once the cap is passed."""

    def __init__(self, file: BinaryIO, max_bytes: int) -> None:
        self._file = file
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes, /) -> int:
        self.bytes_written += len(data)
        if self.bytes_written > self._max_bytes:
            raise too_large(self._max_bytes)
        self._sha256.update(data)
        self._file.write(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


def zstd_params(level: int, threads: int) -> zstandard.ZstdCompressionParameters:
    """Multi-threaded zstd (threads 0 = one worker per core) with jobs of one window.

    libzstd's default job is 4 windows, and each worker holds its job's input and output:
    at level 3 that was ~45 MB of the worker's peak RSS. Jobs of one window (2 MiB at level 3,
    more at higher levels) keep it near 10 MB at the same speed, and overlap with the previous
    job keeps the ratio (bench/results.md: within 1% of the default)."""
    base = zstandard.ZstdCompressionParameters.from_level(level)
    return zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads or -1, job_size=max(MIN_JOB, 1 << base.window_log)
    )


class Compressor:
    """A write-only stream that compresses into a CappedHashingWriter. Use as a context manager;
    leaving it normally flushes the final frame."""

    def __init__(
        self,
        target: Sink,
        compression: Compression,
        *,
        zstd_level: int,
        zstd_threads: int,
        gzip_level: int,
    ) -> None:
        self.raw_bytes = 0
        self._stream: Sink | None
        if compression is Compression.ZSTD:
            cctx = zstandard.ZstdCompressor(
                compression_params=zstd_params(zstd_level, zstd_threads)
            )
            self._stream = cctx.stream_writer(target, closefd=False)  # type: ignore[arg-type]
        elif compression is Compression.GZIP:
            # mtime=0 keeps the output a function of the input alone.
            self._stream = gzip.GzipFile(  # type: ignore[call-overload]
                fileobj=target, mode="wb", compresslevel=gzip_level, mtime=0
            )
        else:
            self._stream = None
        self._target = target

    def write(self, data: bytes, /) -> int:
        self.raw_bytes += len(data)
        if self._stream is None:
            return self._target.write(data)
        return self._stream.write(data)

    def __enter__(self) -> Compressor:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._stream is not None and exc_type is None:
            self._stream.close()  # type: ignore[attr-defined]
