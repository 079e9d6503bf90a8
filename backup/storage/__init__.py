"""Storage backends behind one interface; `open_storage` picks the configured one."""

from __future__ import annotations

from backup.errors import ConfigurationError
from backup.settings import Settings
from backup.storage.base import Storage
from backup.storage.local import LocalStorage


def open_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "local":
        return LocalStorage(settings.local_storage_dir)
    raise ConfigurationError(
        f"STORAGE_BACKEND={settings.storage_backend!r} is not supported; use 'local'"
    )


__all__ = ["Storage", "open_storage"]
