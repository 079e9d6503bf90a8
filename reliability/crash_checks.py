"""What the crash matrix checks once a backup has come through the crash: one verified artifact
with its manifest and signature, no spool or unfinished upload left, one notification per
channel, no needless dump, and a resumed upload where the cell says so. A mixin of
`reliability.crashes._Run`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from backup.download import download
from backup.models import ExportResult, short_run_id
from reliability.harness import activity_history

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from reliability.crashes import Cell, Host, Matrix

PROJECT = "crashmx"
PART_MIB = 5


class CellFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CellFailed(message)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class OutcomeChecks:
    m: Matrix
    cell: Cell
    host: Host
    folder: Path
    spool_a: Path
    spool_b: Path
    handle: WorkflowHandle[Any, ExportResult] | None

    def read_events(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def check_outcome(self, result: ExportResult) -> list[str]:
        notes = [self._check_storage(result)]
        notes.append(await self._check_signature(result))
        notes.append(self._check_spool(result))
        notes.append(self._check_multipart(result))
        notes.append(self._check_notifications(result))
        notes.append(await self._check_dumps())
        if self.cell.resumes_upload:
            notes.append(self._check_resumed_upload(result.size_bytes))
        return notes

    def _check_storage(self, result: ExportResult) -> str:
        key = urlparse(result.location).path.lstrip("/")
        tail = short_run_id(result.run_id)
        listed = self.m.s3.list_objects_v2(Bucket=self.m.bucket, Prefix=f"backups/{PROJECT}/")
        keys = sorted(o["Key"] for o in listed.get("Contents", []) if tail in o["Key"])
        wanted = sorted([key, f"{key}.manifest.json", f"{key}.manifest.json.sig"])
        check(keys == wanted, f"storage holds {keys} for the run, expected {wanted}")
        body = self.m.s3.get_object(Bucket=self.m.bucket, Key=key)["Body"].read()
        manifest = json.loads(
            self.m.s3.get_object(Bucket=self.m.bucket, Key=f"{key}.manifest.json")["Body"].read()
        )
        digest = hashlib.sha256(body).hexdigest()
        check(digest == manifest["sha256"] == result.sha256, "artifact SHA-256 ≠ manifest")
        return f"1 artifact + manifest + signature, {len(body):,} bytes, SHA-256 matches"

    async def _check_signature(self, result: ExportResult) -> str:
        target = self.folder / "downloaded"
        await download(result.location, target, self.m.stack.settings())
        target.unlink()
        return "download verifies signature, size and SHA-256"

    def _check_spool(self, result: ExportResult) -> str:
        left = _files(self.spool_b)
        check(not left, f"spool files left on the live host: {left}")
        note = "no spool left"
        if self.host == "other":
            dead = _files(self.spool_a)
            # The dead host's disk is nobody's to clean: its worker sweeps stale spools at start.
            note += f" (dead host-a keeps {len(dead)} file(s), swept by its next start)"
        return note

    def _check_multipart(self, result: ExportResult) -> str:
        listed = self.m.s3.list_multipart_uploads(
            Bucket=self.m.bucket, Prefix=f"backups/{PROJECT}/"
        )
        tail = short_run_id(result.run_id)
        open_uploads = [u for u in listed.get("Uploads", []) if tail in u["Key"]]
        check(not open_uploads, f"unfinished multipart uploads left: {open_uploads}")
        return "no unfinished multipart upload"

    def _check_notifications(self, result: ExportResult) -> str:
        receiver = self.m.stack.webhooks
        assert receiver is not None
        hooks = [
            d
            for d in receiver.deliveries
            if _header(d.headers, "Idempotency-Key").startswith(result.run_id)
        ]
        keys = Counter(_header(d.headers, "Idempotency-Key") for d in hooks)
        wanted = f"{result.run_id}:backup.succeeded"
        check(set(keys) == {wanted}, f"webhook events {dict(keys)}, expected only {wanted}")
        check(all(d.verified for d in hooks), "a webhook delivery failed its signature check")
        check(len({d.body for d in hooks}) == 1, "webhook redeliveries differ in body")
        mails = Counter(
            str(m.get("X-Export-Backup-Id", ""))
            for m in self.m.stack.mailbox
            if str(m.get("X-Export-Backup-Id", "")).startswith(result.run_id)
        )
        check(mails == Counter({wanted: 1}), f"emails {dict(mails)}, expected one of {wanted}")
        return f"webhook x{keys[wanted]} (one Idempotency-Key), email x1"

    async def _check_dumps(self) -> str:
        assert self.handle is not None
        history = await activity_history(self.handle)
        scheduled, attempts = history.scheduled["dump_schema"], history.started["dump_schema"]
        dumping = {"dump_schema", "back_up_small_schema"}  # the latter a local activity
        runs = [e for e in self.read_events() if e.get("activity") in dumping]
        hosts = ",".join(e["host"] for e in runs)
        allowed = self.cell.dumps[self.host]
        check(
            len(runs) in allowed,
            f"dump_schema ran {len(runs)}x ({hosts}), expected {' or '.join(map(str, allowed))}",
        )
        return (
            f"dump ran {len(runs)}x ({hosts}); history: {scheduled} scheduled, "
            f"started attempts {attempts}"
        )

    def _check_resumed_upload(self, size: int) -> str:
        stores = [e for e in self.read_events() if e.get("event") == "store"]
        done = [e for e in stores if "CompleteMultipartUpload" in e["requests"]]
        check(len(done) == 1, f"{len(done)} completed uploads")
        final = done[0]
        parts = sum(r.startswith("UploadPart") for r in final["requests"])
        if self.host == "other":
            return f"new host uploaded afresh ({parts} parts); stale upload aborted by cleanup"
        check(final["resumed"] and "ListParts" in final["requests"], "upload did not resume")
        check("CreateMultipartUpload" not in final["requests"], "upload started over")
        total = -(-size // (PART_MIB * 1024 * 1024))
        check(parts < total, f"resumed upload sent all {parts} parts again")
        return f"upload resumed: ListParts, {parts} of {total} parts sent, the rest kept"


def _header(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")
