"""Hostile and bad workflow inputs against the dev stack's real worker (issue 7).

Every rejected input must fail at once with a non-retryable error that names the field or the
project, with each activity attempted once. Valid ids of look-alike projects (whose schemas are
prefixes of, or unquoted patterns matching, another tenant's schema) must back up exactly their
own schema: the artifact is downloaded, restored into a scratch database and inspected.

    .venv/bin/python -m reliability.hostile_inputs   # own stack; results/hostile_inputs.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from backup.download import download
from backup.encryption import decrypt_file
from backup.models import Compression, DumpFormat, ExportResult
from backup.pgdump import pg_bin_dir
from backup.restore import restore, scratch_database
from client import connect
from devstack.seed import register_project
from devstack.stack import DevStack
from reliability import harness
from reliability.harness import activity_history, own_stack, text_table, write_json

RESULTS = harness.RESULTS / "hostile_inputs.json"
# A rejection is a validation query at most, then notifications: seconds, not a retry backoff.
MAX_SECONDS = 15.0
WORKFLOW = "ExportBackupWorkflow"
RESTORE = "RestoreBackupWorkflow"


@dataclass(frozen=True)
class Case:
    name: str
    body: Any  # the raw workflow input, sent as is (no client-side validation)
    error_type: str | None  # the root error type expected; None = valid, must back up
    names: str  # what the error message must contain: the field or the project id
    workflow: str = "ExportBackupWorkflow"


def _id(project_id: Any) -> dict[str, Any]:
    return {"project_id": project_id}


def _acme(**fields: Any) -> dict[str, Any]:
    return {"project_id": "acme", **fields}


def _restore(**fields: Any) -> dict[str, Any]:
    # Refused before anything is downloaded, so the location need not exist.
    return {"location": "file:///nowhere/backups/acme/x.dump.zst", **fields}


BAD = "InvalidRequest"
CASES: list[Case] = [
    Case("unknown project", _id("nosuchproject"), "ProjectNotFound", "nosuchproject"),
    Case("inactive project (initech, SUSPENDED)", _id("initech"), "ProjectInactive", "initech"),
    Case("deleted project (hooli)", _id("hooli"), "ProjectInactive", "hooli"),
    Case("empty id", _id(""), BAD, "project_id"),
    Case("10,000-character id", _id("a" * 10_000), BAD, "project_id"),
    Case("129-character id", _id("a" * 129), BAD, "project_id"),
    Case("id with *", _id("acm*"), BAD, "project_id"),
    Case("id with ?", _id("acm?"), BAD, "project_id"),
    Case("id with leading .", _id(".acme"), BAD, "project_id"),
    Case("id with leading -", _id("-acme"), BAD, "project_id"),
    Case("id with inner . (no such project)", _id("ac.me"), "ProjectNotFound", "ac.me"),
    Case('id with "', _id('ac"me'), BAD, "project_id"),
    Case("id with '", _id("ac'me"), BAD, "project_id"),
    Case("id with ;", _id("acme;DROP"), BAD, "project_id"),
    Case("SQL injection", _id("acme' OR '1'='1"), BAD, "project_id"),
    Case("id with -- (no such project)", _id("acme--"), "ProjectNotFound", "acme--"),
    Case("id with a space", _id("ac me"), BAD, "project_id"),
    Case("id with a trailing space", _id("acme "), BAD, "project_id"),
    Case("id with a trailing newline", _id("acme\n"), BAD, "project_id"),
    Case("id with a NUL byte", _id("acme\x00"), BAD, "project_id"),
    Case("id with a slash", _id("../acme"), BAD, "project_id"),
    Case("unicode id (tenant_ü)", _id("tenant_ü"), BAD, "project_id"),
    Case("unicode look-alike (Cyrillic a)", _id("\u0430cme"), BAD, "project_id"),
    Case("upper case (ACME)", _id("ACME"), "ProjectNotFound", "ACME"),
    Case("mixed case (Acme)", _id("Acme"), "ProjectNotFound", "Acme"),
    Case("another tenant's schema as id", _id("tenant_globex"), "ProjectNotFound", "tenant_globex"),
    Case("prefix of another tenant's schema", _id("tenant_glob"), "ProjectNotFound", "tenant_glob"),
    Case("invalid format", _acme(format="zip"), BAD, "format"),
    Case("format in upper case", _acme(format="CUSTOM"), BAD, "format"),
    Case("invalid compression", _acme(compression="lz4"), BAD, "compression"),
    Case("invalid email", _acme(notify_email="not-an-email"), BAD, "notify_email"),
    Case(
        "email header injection",
        _acme(notify_email="a@b.example\nBcc: x@y.example"),
        BAD,
        "notify_email",
    ),
    Case("unknown channel", _acme(notify_channels=["sms"]), BAD, "notify_channels"),
    Case("unknown field", _acme(bogus=1), BAD, "bogus"),
    Case("unknown field naming a schema", _acme(schema_name="tenant_globex"), BAD, "schema_name"),
    Case("id of the wrong type (number)", _id(42), BAD, "project_id"),
    Case("id of the wrong type (list)", _id(["acme"]), BAD, "project_id"),
    Case("compress of the wrong type", _acme(compress="maybe"), BAD, "compress"),
    Case("channels of the wrong type", _acme(notify_channels="email"), BAD, "notify_channels"),
    Case("request_id with a slash", _acme(request_id="../x"), BAD, "request_id"),
    Case("input is a string", "acme", BAD, "input"),
    Case("input is a list", ["acme"], BAD, "input"),
    Case("input is null", None, BAD, "project_id"),
    Case("restore into a pg_ schema", _restore(into_schema="pg_evil"), BAD, "into_schema", RESTORE),
    Case(
        "restore into a 64-byte unicode name",
        _restore(into_schema="ü" * 32),
        BAD,
        "into_schema",
        RESTORE,
    ),
    Case(
        "restore into a name with NUL", _restore(into_schema="a\x00b"), BAD, "into_schema", RESTORE
    ),
    Case(
        "restore, replace without confirmation",
        _restore(replace=True),
        BAD,
        "confirm_replace",
        RESTORE,
    ),
    Case(
        "restore with an unknown field",
        _restore(into_schema="x", schema="acme"),
        BAD,
        "schema",
        RESTORE,
    ),
]

# Valid, ACTIVE look-alike projects created for the run: id → schema. Each schema is a prefix
# of another tenant's schema, or would match one as an unquoted pg_dump pattern.
LOOKALIKES: dict[str, str] = {
    "tenant": "tenant",  # prefix of globex's tenant_globex
    "ten": "ten",  # prefix of tenant and tenant_x
    "tenant_x": "tenant_x",
    "qmark": "tenant?globex",  # ? matches any character unquoted: would take tenant_globex
    "dotted": "tenant.globex",  # . separates schema and table unquoted
    "star": "tenant*",  # would take every tenant_* schema
    "upper": "TENANT",  # unquoted patterns are folded to lower case
}
CASES += [
    Case(f"look-alike {pid} (schema {schema!r})", _id(pid), None, schema)
    for pid, schema in LOOKALIKES.items()
]


@dataclass
class Row:
    input: str
    passed: bool
    error_type: str
    seconds: float
    detail: str


def create_lookalikes(database_url: str) -> None:
    """One small table per look-alike schema, holding the schema's own name."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for pid, schema in LOOKALIKES.items():
            ident = sql.Identifier(schema)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
            conn.execute(sql.SQL("CREATE TABLE {}.owner (name text)").format(ident))
            conn.execute(sql.SQL("INSERT INTO {}.owner VALUES (%s)").format(ident), (schema,))
            register_project(conn, pid, schema, name=f"Look-alike {pid}")


def drop_lookalikes(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM control_plane.projects WHERE id = ANY(%s)", (list(LOOKALIKES),))
        for schema in LOOKALIKES.values():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def label(case: Case) -> str:
    return f"{case.name}: {describe(case.body)}"


def describe(body: Any) -> str:
    """The input as a short, printable string (the 10,000-character id is abbreviated)."""
    text = json.dumps(body, ensure_ascii=True)
    return text if len(text) <= 80 else f"{text[:40]}… ({len(text)} characters)"


async def run_case(stack: DevStack, client: Client, case: Case) -> Row:
    if case.error_type is None:
        return await _run_lookalike(stack, client, case)
    queue = stack.settings().temporal_task_queue
    started = time.monotonic()
    handle = await client.start_workflow(
        case.workflow, case.body, id=f"hostile-{uuid.uuid4().hex[:12]}", task_queue=queue
    )
    try:
        await asyncio.wait_for(handle.result(), timeout=120)
    except WorkflowFailureError as err:
        seconds = round(time.monotonic() - started, 2)
        return await _judge_failure(handle, case, err, seconds)
    seconds = round(time.monotonic() - started, 2)
    return Row(label(case), False, "", seconds, f"ACCEPTED: expected {case.error_type}")


async def _judge_failure(
    handle: WorkflowHandle[Any, Any], case: Case, err: WorkflowFailureError, seconds: float
) -> Row:
    cause = err.cause
    problems: list[str] = []
    error_type, message = "", str(cause)
    if isinstance(cause, ApplicationError):
        error_type = cause.type or ""
        # BackupFailed wraps the failing step's error; its details name the root type.
        if error_type == "BackupFailed" and cause.details:
            error_type = str(cause.details[0].get("error_type", ""))
        if not cause.non_retryable:
            problems.append("retryable")
    if error_type != case.error_type:
        problems.append(f"expected {case.error_type}")
    if case.names not in message:
        problems.append(f"message does not name {case.names!r}")
    if seconds >= MAX_SECONDS:
        problems.append(f"took {seconds} s")
    history = await activity_history(handle)
    highest, task_failures = history.highest_attempts(), history.workflow_task_failures
    retried = {name: n for name, n in highest.items() if n > 1}
    if retried or task_failures:
        problems.append(f"retried: {retried}, failed workflow tasks: {task_failures}")
    if case.error_type == "InvalidRequest" and highest:
        problems.append(f"activities ran for invalid input: {sorted(highest)}")
    detail = "; ".join(problems) if problems else message
    return Row(label(case), not problems, error_type, seconds, detail[:300])


async def _run_lookalike(stack: DevStack, client: Client, case: Case) -> Row:
    """Back it up (with a test restore), then download, restore into a scratch database and
    list what is there: exactly its schema, with its own single row."""
    schema = case.names
    started = time.monotonic()
    handle = await client.start_workflow(
        WORKFLOW,
        {**case.body, "verify_restore": True},
        id=f"hostile-{uuid.uuid4().hex[:12]}",
        task_queue=stack.settings().temporal_task_queue,
        result_type=ExportResult,
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=300)
    except WorkflowFailureError as err:
        seconds = round(time.monotonic() - started, 2)
        return Row(label(case), False, "", seconds, f"REFUSED: {err.cause}"[:300])
    seconds = round(time.monotonic() - started, 2)
    schemas, owners, tables = await restored_contents(stack, result)
    problems = []
    if result.schema_name != schema:
        problems.append(f"backed up schema {result.schema_name!r}")
    if schemas != [schema] or owners != [schema] or tables != ["owner"]:
        problems.append(f"restored schemas {schemas}, rows {owners}, manifest tables {tables}")
    detail = "; ".join(problems) or f"restored exactly schema {schema!r} and its one row"
    return Row(label(case), not problems, "", seconds, detail)


async def restored_contents(
    stack: DevStack, result: ExportResult
) -> tuple[list[str], list[str], list[str]]:
    """Schemas in a scratch database the artifact was restored into, the rows of their `owner`
    tables, and the manifest's table list."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        artifact, plain = Path(folder, "artifact"), Path(folder, "plain")
        manifest = await download(result.location, artifact, stack.settings())
        if manifest.encryption:
            decrypt_file(artifact, plain, stack.keys.identity_file)
            artifact = plain
        scratch = f"hostile_{uuid.uuid4().hex[:8]}"
        with scratch_database(stack.postgres.url(), scratch) as url:
            restore(
                artifact,
                DumpFormat(result.format),
                Compression(result.compression),
                url,
                pg_bin_dir(),
            )
            with psycopg.connect(url) as conn:
                schemas = [
                    r[0]
                    for r in conn.execute(
                        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s)"
                        " AND nspname NOT LIKE 'pg\\_%%' ORDER BY 1",
                        (["public", "information_schema"],),
                    )
                ]
                owners = [
                    r[0]
                    for s in schemas
                    for r in conn.execute(
                        sql.SQL("SELECT name FROM {}.owner").format(sql.Identifier(s))
                    )
                ]
    return schemas, owners, list(manifest.tables)


async def run_all(stack: DevStack) -> list[Row]:
    client = await connect(stack.temporal.address, "default")
    create_lookalikes(stack.postgres.url())
    try:
        return [await run_case(stack, client, case) for case in CASES]
    finally:
        drop_lookalikes(stack.postgres.url())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hostile-stack-") as home:
        stack = own_stack(Path(home))
        with stack:
            rows = asyncio.run(run_all(stack))
    print(text_table(rows, ["input", "passed", "error_type", "seconds", "detail"], clip=90))
    write_json(rows, RESULTS)
    print(f"{sum(r.passed for r in rows)}/{len(rows)} passed; results in {RESULTS}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
