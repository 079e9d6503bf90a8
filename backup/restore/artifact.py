"""Unpack an artifact for pg_restore or psql: decompress it, unpack a directory artifact's tar,
and split off the large-object script appended after pg_dump's output (its offset is in the
manifest)."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from backup.dependency_models import LargeObjects
from backup.models import Compression, DumpFormat

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Unpacked:
    dump: Path  # what pg_restore or psql reads (a directory for the directory format)
    large_objects: Path | None  # the appended script, when the backup has one


def decompress(artifact: Path, compression: Compression, destination: Path) -> None:
    with artifact.open("rb") as src, destination.open("wb") as dst:
        if compression is Compression.ZSTD:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        elif compression is Compression.GZIP:
            with gzip.GzipFile(fileobj=src) as unzipped:
                shutil.copyfileobj(unzipped, dst)
        else:
            shutil.copyfileobj(src, dst)


def tar_compression(artifact: Path) -> Compression:
    """The compression around a directory artifact's tar. Older artifacts are a zstd or gzip
    compressed tar of uncompressed files; newer ones a plain tar of files pg_dump compressed
    (their manifest names that compression). The first bytes tell: a tar starts with a name."""
    with artifact.open("rb") as file:
        head = file.read(4)
    if head == ZSTD_MAGIC:
        return Compression.ZSTD
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


def unpack(
    artifact: Path,
    fmt: DumpFormat,
    compression: Compression,
    scratch: Path,
    large_objects: LargeObjects | None = None,
) -> Unpacked:
    """Into `scratch`. A directory artifact is unpacked by what it is, whatever `compression`
    says (see tar_compression)."""
    offset = large_objects.offset if large_objects else None
    outer = tar_compression(artifact) if fmt is DumpFormat.DIRECTORY else compression
    stream = artifact
    if outer is not Compression.NONE or offset is not None:
        stream = scratch / "artifact"
        decompress(artifact, outer, stream)
    script = None
    if offset is not None:
        script = scratch / "large_objects.sql"
        _split(stream, offset, script)
    if fmt is not DumpFormat.DIRECTORY:
        return Unpacked(stream, script)
    with tarfile.open(stream) as tar:
        tar.extractall(scratch, filter="data")
    if stream != artifact:
        stream.unlink()
    return Unpacked(scratch / "dump", script)  # the artifact holds the directory as dump/


def _split(stream: Path, offset: int, script: Path) -> None:
    """Move the bytes from `offset` on into `script`, leaving pg_dump's own output."""
    with stream.open("rb") as src, script.open("wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst)
    os.truncate(stream, offset)
