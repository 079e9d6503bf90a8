"""The results table (printed and written to bench/results.md) and the growth plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB = 1_000_000


# The encrypted and signed row of the largest size (peers neither encrypt nor sign).
ENCRYPTED = "ours → s3, age + signed"


@dataclass
class Row:
    size_mb: float  # relation size of the schema, measured
    method: str
    seconds: float
    size_bytes: int | None = None
    worker_hwm: int | None = None
    tree_peak: int | None = None
    steps: dict[str, float] = field(default_factory=dict)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _baseline(rows: list[Row], size_mb: float, prefix: str) -> Row | None:
    return next((r for r in rows if r.size_mb == size_mb and r.method.startswith(prefix)), None)


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def table(rows: list[Row]) -> str:
    """Markdown, one line per method and size, ratios against baseline A of the same size, and
    for the directory format also against baseline D (pg_dump -Fd -j), its fair peer."""
    head = (
        "| schema (relation size) | method | wall s | x baseline A | x baseline D | artifact MB "
        "| size x A | size x D | worker peak RSS MB | worker+children peak MB |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        a = _baseline(rows, row.size_mb, "A ")
        assert a is not None
        directory = row.method.startswith("D ") or "directory" in row.method
        d = _baseline(rows, row.size_mb, "D ") if directory else None
        d_seconds, d_bytes = (d.seconds, d.size_bytes) if d else (None, None)
        lines.append(
            f"| {row.size_mb:.0f} MB | {row.method} | {row.seconds:.2f} "
            f"| {row.seconds / a.seconds:.2f} | {_fmt(_ratio(row.seconds, d_seconds), '.2f')} "
            f"| {_fmt(row.size_bytes and row.size_bytes / MB, '.1f')} "
            f"| {_fmt(_ratio(row.size_bytes, a.size_bytes), '.3f')} "
            f"| {_fmt(_ratio(row.size_bytes, d_bytes), '.3f')} "
            f"| {_fmt(row.worker_hwm and row.worker_hwm / MB, '.0f')} "
            f"| {_fmt(row.tree_peak and row.tree_peak / MB, '.0f')} |"
        )
    return head + "\n".join(lines) + "\n"


def steps_table(rows: list[Row]) -> str:
    """Where the workflow's time goes: seconds per activity, scheduled to completed."""
    ours = [r for r in rows if r.steps]
    names = sorted(
        {n for r in ours for n in r.steps}, key=lambda n: -max(r.steps.get(n, 0) for r in ours)
    )
    head = "| schema | method | " + " | ".join(names) + " | rest (workflow tasks, queues) |\n"
    head += "|---|---|" + "---:|" * (len(names) + 1) + "\n"
    lines = []
    for r in ours:
        cells = " | ".join(f"{r.steps.get(n, 0):.2f}" for n in names)
        rest = r.seconds - sum(r.steps.values())
        lines.append(f"| {r.size_mb:.0f} MB | {r.method} | {cells} | {rest:.2f} |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(r.method for r in rows))
    for method in methods:
        mine = sorted((r for r in rows if r.method == method), key=lambda r: r.size_mb)
        sizes = [r.size_mb for r in mine]
        times.plot(sizes, [r.seconds for r in mine], marker="o", label=method)
        if any(r.worker_hwm for r in mine):
            memory.plot(sizes, [(r.worker_hwm or 0) / MB for r in mine], marker="o", label=method)
    times.set(xlabel="schema relation size (MB)", ylabel="wall time (s)", title="Time vs size")
    memory.set(
        xlabel="schema relation size (MB)",
        ylabel="worker peak RSS (MB, VmHWM)",
        title="Worker memory vs size",
        ylim=(0, 256),
    )
    memory.axhline(200, color="grey", linestyle="--", linewidth=1)
    times.legend(fontsize=7)
    memory.legend(fontsize=7)
    times.grid(alpha=0.3)
    memory.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets(rows: list[Row]) -> str:
    """The issue's targets with the measured figure beside each (custom format, no encryption)."""
    a = {r.size_mb: r for r in rows if r.method.startswith("A ")}
    s3 = sorted((r for r in rows if r.method == "ours → s3"), key=lambda r: r.size_mb)
    ours = [r for r in rows if r.method in ("ours → s3", "ours → local")]
    if not s3:
        return ""
    big = s3[-1]
    wall = big.seconds / a[big.size_mb].seconds
    sealed = next(
        (r for r in rows if r.method == ENCRYPTED and r.size_mb == big.size_mb),
        None,
    )
    size = max((r.size_bytes or 0) / (a[r.size_mb].size_bytes or 1) for r in ours)
    rss = max((r.worker_hwm or 0) for r in ours) / MB
    per_100 = ", ".join(f"{r.seconds / r.size_mb * 100:.2f} s at {r.size_mb:.0f} MB" for r in s3)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    return (
        "| target | measured | |\n|---|---|---|\n"
        f"| full workflow to S3 on the largest schema ≤ 0.28 x baseline A | {wall:.2f} x "
        f"({big.seconds:.1f} s vs {a[big.size_mb].seconds:.1f} s at {big.size_mb:.0f} MB) "
        f"| {verdict(wall <= 0.28)} |\n"
        + (
            f"| encrypted and signed within 5 % of that | {sealed.seconds / big.seconds:.2f} x "
            f"({sealed.seconds:.1f} s) | {verdict(sealed.seconds <= 1.05 * big.seconds)} |\n"
            if sealed
            else ""
        )
        + f"| artifact ≤ 1.05 x baseline A's file (default ZSTD_LEVEL) | at most {size:.3f} x "
        f"| {verdict(size <= 1.05)} |\n"
        f"| worker peak RSS ≤ 200 MB at every size | at most {rss:.0f} MB (VmHWM) "
        f"| {verdict(rss <= 200)} |\n"
        f"| time grows linearly | seconds per 100 MB of schema, to S3: {per_100} | see plot |\n"
    )


def small_targets(
    per_second: float | None, p95: float | None, fleet_per_second: float | None
) -> str:
    """Issue 13's targets for tiny tenants with the measured figure beside each."""
    lines = ["| target | measured | |", "|---|---|---|"]
    if per_second is not None and p95 is not None:
        ok = per_second >= 12 and p95 <= 10
        lines.append(
            f"| 100 tiny tenants on one worker ≥ 12 backups/s, p95 ≤ 10 s | {per_second:.2f}/s, "
            f"p95 {p95:.1f} s | {'met' if ok else '**missed**'} |"
        )
    if fleet_per_second is not None:
        ok = fleet_per_second >= 10
        lines.append(
            f"| fleet backup of a few hundred tiny tenants ≥ 10 backups/s | "
            f"{fleet_per_second:.2f}/s | {'met' if ok else '**missed**'} |"
        )
    return "\n".join(lines) + "\n"
