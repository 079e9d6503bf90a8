"""Errors the domain raises. Their class name becomes the Temporal ApplicationError type, so
retry policies and the Web UI can tell them apart; messages name the thing that is wrong and
what to do about it, and never contain secrets."""

from __future__ import annotations


class BackupError(Exception):
    """Base class. `retryable` tells the activity layer how to map it."""

    retryable = False


class InvalidRequest(BackupError):
    pass


class ProjectNotFound(BackupError):
    pass


class ProjectInactive(BackupError):
    pass


class SchemaNotFound(BackupError):
    pass


class BackupTooLarge(BackupError):
    pass


class DumpFailed(BackupError):
    """pg_dump exited non-zero: often transient (connection reset, server restart)."""

    retryable = True


class ArtifactCorrupted(BackupError):
    """The spool file does not match what the dump recorded: the dump must be redone."""


class StorageError(BackupError):
    """Transient by default (timeouts, 5xx); `retryable=False` for what only a person can fix
    (missing bucket, rejected credentials, a location that does not exist)."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConfigurationError(BackupError):
    pass


class IntegrityError(BackupError):
    """A downloaded artifact does not match its manifest: refuse to use it."""
