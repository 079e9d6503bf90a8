"""One source of truth for error types (backup/errors.py): the permanent list is derived from
each class's own `retryable`, and covers what the workflows' retry policies refuse to retry."""

from __future__ import annotations

from backup import errors
from workflows import policies


def test_permanent_is_every_class_no_retry_can_fix() -> None:
    defined = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.BackupError)
        and cls is not errors.BackupError
    ]
    assert set(errors.PERMANENT) == {c.__name__ for c in defined if not c.retryable}
    assert {"DumpFailed", "StorageError", "NotificationFailed"}.isdisjoint(errors.PERMANENT)
    assert errors.error_type(errors.SpoolFull) == "SpoolFull"


def test_the_retry_policies_list_nothing_the_errors_module_does_not_know() -> None:
    """workflows/policies.py still spells its list out (another branch owns it); it must stay
    within the derived one, so replacing it by errors.PERMANENT loses nothing."""
    assert set(policies.PERMANENT) <= set(errors.PERMANENT)
