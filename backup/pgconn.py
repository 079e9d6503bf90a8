"""Connection details for PostgreSQL client programs without ever exposing the password.

pg_dump gets a conninfo string without the password on its command line and the password
through a passfile that exists only in memory (memfd), so neither `ps`, /proc/*/cmdline nor
the spool disk ever holds it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(frozen=True)
class ClientConnection:
    conninfo: str  # safe to show: no password
    env: dict[str, str]  # extra environment for the child process
    pass_fds: tuple[int, ...]


def redact(database_url: str) -> str:
    """The URL as conninfo without its password, for messages."""
    params = conninfo_to_dict(database_url)
    params.pop("password", None)
    return make_conninfo("", **params)


def _passfile_line(password: str) -> bytes:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n".encode()


@contextmanager
def client_connection(database_url: str) -> Iterator[ClientConnection]:
    params = conninfo_to_dict(database_url)
    password = params.pop("password", None)
    conninfo = make_conninfo("", **params)
    if not password:
        yield ClientConnection(conninfo, {}, ())
        return
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pgpass")
        try:
            os.write(fd, _passfile_line(str(password)))
            os.fchmod(fd, 0o600)
            yield ClientConnection(conninfo, {"PGPASSFILE": f"/proc/self/fd/{fd}"}, (fd,))
        finally:
            os.close(fd)
        return
    # No memfd (macOS): a private temporary file, removed as soon as the child is done.
    with tempfile.NamedTemporaryFile("wb", prefix="pgpass-") as passfile:
        os.chmod(passfile.name, 0o600)
        passfile.write(_passfile_line(str(password)))
        passfile.flush()
        yield ClientConnection(conninfo, {"PGPASSFILE": passfile.name}, ())
