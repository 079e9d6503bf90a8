"""What a notification says, rendered once for every channel: subject, plain text, HTML and a
short line for chats."""

from __future__ import annotations

from html import escape

from backup.models import BackupEvent, Notification


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def succeeded(n: Notification) -> bool:
    return n.event is BackupEvent.SUCCEEDED


def subject(n: Notification) -> str:
    if succeeded(n):
        return f"Backup of {n.project_id} succeeded ({human_bytes(n.size_bytes)})"
    return f"Backup of {n.project_id} FAILED during {n.failed_step}"


def fields(n: Notification, link: str | None) -> list[tuple[str, str]]:
    rows = [("Project", n.project_id), ("Status", "succeeded" if succeeded(n) else "FAILED")]
    if succeeded(n):
        rows += [
            ("Size", f"{human_bytes(n.size_bytes)} ({n.size_bytes} bytes)"),
            ("Tables", str(n.table_count)),
            ("Format", str(n.format)),
            ("Duration", f"{n.duration_seconds} s"),
            ("Location", str(n.location)),
            ("SHA-256", str(n.sha256)),
        ]
    else:
        rows += [
            ("Failed step", str(n.failed_step)),
            ("Reason", str(n.error)),
            ("Duration", f"{n.duration_seconds} s"),
        ]
    rows.append(("Workflow", n.workflow_id))
    if link:
        rows.append(("Temporal Web UI", link))
    return rows


def text_body(n: Notification, link: str | None) -> str:
    width = max(len(label) for label, _ in fields(n, link))
    lines = [subject(n), ""] + [f"{label:<{width}}  {value}" for label, value in fields(n, link)]
    if not succeeded(n):
        lines += ["", "Nothing partial was kept. Fix the reason above and start it again."]
    return "\n".join(lines) + "\n"


def html_body(n: Notification, link: str | None) -> str:
    colour = "#1a7f37" if succeeded(n) else "#cf222e"
    rows = "".join(
        f'<tr><th style="text-align:left;padding:4px 12px 4px 0">{escape(label)}</th>'
        f'<td style="padding:4px 0;font-family:monospace">{_html_value(label, value)}</td></tr>'
        for label, value in fields(n, link)
    )
    return (
        '<!doctype html><html><body style="font-family:sans-serif">'
        f'<h2 style="color:{colour}">{escape(subject(n))}</h2>'
        f"<table>{rows}</table></body></html>"
    )


def _html_value(label: str, value: str) -> str:
    if label == "Temporal Web UI":
        return f'<a href="{escape(value, quote=True)}">open the workflow</a>'
    return escape(value)


def short_text(n: Notification, link: str | None) -> str:
    """A few lines for Telegram and Slack-compatible webhooks."""
    if succeeded(n):
        text = (
            f"✅ Backup of {n.project_id} succeeded: {human_bytes(n.size_bytes)}, "
            f"{n.table_count} tables, {n.format}, {n.duration_seconds} s\n{n.location}"
        )
    else:
        text = f"❌ Backup of {n.project_id} FAILED during {n.failed_step}: {n.error}"
    return text + (f"\n{link}" if link else "")
