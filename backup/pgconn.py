"""Connections to PostgreSQL without ever exposing the password: for client programs, and a
small pool of the dump's own snapshot transactions.

pg_dump gets a conninfo string without the password on its command line and the password
through a passfile that exists only in memory (memfd), so neither `ps`, /proc/*/cmdline nor
the spool disk ever holds it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus


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


# Idle snapshot connections kept per database URL (process-wide, all threads): a new one costs
# the server a backend start and SCRAM, and the worker the same again (~3 + 4 ms of CPU a
# tiny backup, bench/findings.md).
IDLE_CONNECTIONS = 4
_idle: dict[str, list[psycopg.Connection]] = {}
_idle_lock = threading.Lock()
BEGIN = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@contextmanager
def read_only_transaction(database_url: str) -> Iterator[psycopg.Connection]:
    """A repeatable-read, read-only transaction (its first statement already sent, so
    `SET TRANSACTION SNAPSHOT` may follow) on a connection no one else holds meanwhile.

    The connection comes from the pool when one is idle: one the server closed in between
    (restart, idle_session_timeout) fails that first statement and is replaced by a new one.
    It goes back only after a clean exit from a healthy transaction, which then ends; after any
    error, even one the caller caught, it is closed. Callers set nothing beyond their
    transaction (SET LOCAL, set_config(..., true)), so nothing of one dump reaches the next."""
    conn = _open(database_url)
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    _give_back(database_url, conn)


def _open(database_url: str) -> psycopg.Connection:
    while (conn := _take_idle(database_url)) is not None:
        try:
            conn.execute(BEGIN)
            return conn
        except psycopg.OperationalError:
            conn.close()  # gone while idle: try the next one, or a new one
    conn = psycopg.connect(database_url)
    try:
        conn.execute(BEGIN)
    except BaseException:
        conn.close()
        raise
    return conn


def _take_idle(database_url: str) -> psycopg.Connection | None:
    with _idle_lock:
        idle = _idle.get(database_url)
        return idle.pop() if idle else None


def _give_back(database_url: str, conn: psycopg.Connection) -> None:
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        conn.close()  # an aborted transaction (an error the caller caught), or none at all
        return
    try:
        conn.rollback()  # read-only: the same as a commit, and it ends the snapshot
    except psycopg.Error:
        conn.close()
        return
    reusable = not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
    with _idle_lock:
        idle = _idle.setdefault(database_url, [])
        if reusable and len(idle) < IDLE_CONNECTIONS:
            idle.append(conn)
            return
    conn.close()


def close_idle_connections() -> None:
    """Close every idle snapshot connection (tests, shutdown)."""
    with _idle_lock:
        conns = [conn for idle in _idle.values() for conn in idle]
        _idle.clear()
    for conn in conns:
        conn.close()
