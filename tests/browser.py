"""Headless Chromium for the browser tests: Debian's package (make chromium), driven by
Playwright, with the flags this machine needs (a closed network: no background traffic)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tmp" / "artifacts" / "browser"
BROWSER_TIMEOUT_MS = 30_000  # a busy 2-core machine renders the Web UI in seconds, not ms

# Playwright adds --headless and a fresh --user-data-dir of its own to every launch.
FLAGS = (
    "--no-sandbox",  # runs as root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)


def chromium_args() -> list[str]:
    return list(FLAGS)


async def shoot(page: Page, name: str) -> Path:
    """A full-page screenshot in tmp/artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def eventually(
    probe: Callable[[], Any], accept: Callable[[Any], bool], timeout: float = 30
) -> Any:
    """Poll `probe` (sync or async) until `accept` takes its value; fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout:g} s"
        await asyncio.sleep(0.25)


async def page_text(page: Page) -> str:
    """The text of the page and of its frames: the Web UI renders markdown (summaries, current
    details) in sandboxed iframes, out of reach of the page's own locators."""
    texts = []
    for frame in page.frames:
        try:
            texts.append(await frame.inner_text("body"))
        except Exception:  # a frame that navigated or closed meanwhile
            continue
    return "\n".join(texts)
