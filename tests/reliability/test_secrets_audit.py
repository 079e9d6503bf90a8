"""No secret anywhere it could leak (reliability/secrets_audit.py): with every storage backend
and notification channel configured, backups, a failing backup and restores leave the database
password, S3 secret key, bot token, SMTP password and webhook secret out of every process's argv
(sampled every 50 ms), every log, every delivery, every manifest and every workflow history."""

from __future__ import annotations

from pathlib import Path

from devstack.stack import DevStack
from reliability.secrets_audit import Audit


async def test_no_secret_in_argv_logs_deliveries_or_history(
    stack: DevStack, tmp_path: Path
) -> None:
    audit = Audit(stack, tmp_path)
    await audit.run()

    assert audit.unused() == [], "a secret was not put to use: the audit would prove nothing"
    failures = [r for r in audit.results if "failed" in r]
    assert len(failures) == len(audit.backends()) and all(
        "SUSPENDED" in r["failed"] for r in failures
    )
    rows = audit.rows()
    assert {r.secret for r in rows} >= {
        "database password",
        "webhook secret",
        "bot token",
        "SMTP password",
    }
    assert stack.s3 is None or any(r.secret == "S3 secret key" for r in rows)
    places = rows[0].places_scanned
    assert sum(p.startswith("history ") for p in places) == 3 * len(audit.backends())
    assert any(p.startswith("log worker.log") for p in places)
    leaks = {r.secret: r.found_in for r in rows if r.occurrences}
    assert leaks == {}, f"secrets found: {leaks}"
