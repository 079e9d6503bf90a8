"""One source of truth for error types (backup/errors.py): every class is defined there, the
permanent list is derived from each class's own `retryable`, every retry policy refuses exactly
that list, and no production module spells an error type out as a string."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from backup import errors
from workflows import policies

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ["activities", "backup", "client", "workflows"]


def every_class() -> list[type[errors.BackupError]]:
    """Every BackupError subclass of the production packages, once each is imported."""
    for package in PRODUCTION:
        for module in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            importlib.import_module(module.name)
    found: list[type[errors.BackupError]] = []
    todo = [errors.BackupError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def test_every_error_class_is_defined_in_the_errors_module() -> None:
    elsewhere = {
        f"{c.__module__}.{c.__name__}" for c in every_class() if c.__module__ != errors.__name__
    }
    assert not elsewhere, f"define these in backup/errors.py: {sorted(elsewhere)}"


def test_permanent_is_every_class_no_retry_can_fix() -> None:
    defined = [c for c in every_class() if c.__module__ == errors.__name__]
    assert set(errors.PERMANENT) == {c.__name__ for c in defined if not c.retryable}
    assert len(errors.PERMANENT) == len(set(errors.PERMANENT))
    retryable = {"DumpFailed", "DatabaseUnavailable", "StorageError", "NotificationFailed"}
    assert retryable.isdisjoint(errors.PERMANENT)
    # Subclasses of a retryable class that are not retryable themselves are permanent too.
    assert {"ListingNotSupported", "UnknownFile", "SchemaExists", "RestoreFailed"} <= set(
        errors.PERMANENT
    )
    assert errors.error_type(errors.SpoolFull) == "SpoolFull"


@pytest.mark.parametrize(
    "name", [n for n, v in vars(policies).items() if isinstance(v, policies.Policy)]
)
def test_every_retry_policy_refuses_exactly_the_permanent_types(name: str) -> None:
    policy: policies.Policy = getattr(policies, name)
    assert list(policy.retry.non_retryable_error_types or []) == list(errors.PERMANENT)


def test_no_production_module_spells_an_error_type_out() -> None:
    """A type compared or raised as a literal would drift from its class: use error_type()."""
    names = "|".join(sorted(c.__name__ for c in every_class()))
    quoted = re.compile(rf"""["']({names})["']""")
    found = []
    for package in [*PRODUCTION, "starter.py", "worker.py"]:
        paths = [ROOT / package] if package.endswith(".py") else (ROOT / package).rglob("*.py")
        for path in paths:
            if path == ROOT / "backup" / "errors.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if quoted.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
