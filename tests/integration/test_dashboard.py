"""The Grafana dashboard (deploy/grafana/dashboards/export-backup.json) shows what the worker
really exports: every metric and label its PromQL names is in the worker's /metrics after real
backups (one succeeded, one failed) on the dev stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from backup.models import ExportRequest
from client import connect_with, start_export
from devstack.ports import free_port, wait_for_port
from devstack.process import bound_to_parent, stop_process
from devstack.stack import DevStack

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "export-backup.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# What Grafana puts in for its variables when the time range is the last hour, all projects.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$project": ".*"}

GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
KEYWORDS = {"bool", "and", "or", "unless", "offset", "by", "without", "on", "ignoring"}
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)")
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s")


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend) of every panel target."""
    return [
        (p["title"], t["expr"], t.get("legendFormat", "")) for p in panels() for t in p["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in braces or grouping clauses) or Grafana variables."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = GROUPING.sub("", bare)
    bare = re.sub(r"\$\{?\w+\}?", "", bare)
    bare = re.sub(r"\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b", "", bare)  # numbers, durations
    names = set()
    for match in IDENTIFIER.finditer(bare):
        if bare[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


def label_names(expr: str, legend: str) -> set[str]:
    """Labels an expression matches on or groups by, and those its legend prints."""
    names: set[str] = set()
    for clause in GROUPING.findall(expr):
        names |= {n.strip() for n in clause.split(",") if n.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    names |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    return names - {"le"}  # the bucket label of every histogram


def test_the_parser_finds_metrics_and_labels() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, step) (rate(a_seconds_bucket{project_id=~"$p"}'
        "[$__rate_interval]))) / on (step) sum(b_total offset 1h) * 3600"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}
    assert label_names(expr, "{{ step }} {{outcome}}") == {"step", "project_id", "outcome"}


def test_dashboard_is_well_formed() -> None:
    data = dashboard()
    assert data["uid"] == "export-backup" and data["title"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the grid"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} queries nothing"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboard_covers_what_an_operator_watches() -> None:
    """Backups per project and outcome, duration and bytes per step, failures by step and
    error type, activity latency and worker slots (issue 15)."""
    wanted = {
        "export_backup_backups": {"project_id", "outcome"},
        "export_backup_step_seconds_bucket": {"step"},
        "export_backup_bytes_dumped": set(),
        "export_backup_bytes_uploaded": set(),
        "export_backup_step_failures": {"step", "error_type"},
        "temporal_activity_execution_latency_bucket": {"activity_type"},
        "temporal_worker_task_slots_used": {"worker_type"},
        "temporal_worker_task_slots_available": {"worker_type"},
    }
    shown: dict[str, set[str]] = defaultdict(set)
    for _, expr, legend in queries():
        for name in metric_names(expr):
            shown[name] |= label_names(expr, legend)
    for name, labels in wanted.items():
        assert name in shown, f"the dashboard does not show {name}"
        assert labels <= shown[name], f"{name} is not broken down by {labels - shown[name]}"


def scrape(port: int) -> dict[str, set[str]]:
    """Metric name -> label names, from the worker's Prometheus endpoint."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    exported: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        if match := SAMPLE.match(line):
            exported[match.group(1)] |= set(re.findall(r'(\w+)="', match.group(2) or ""))
    return exported


@pytest.fixture(scope="module")
async def exported(stack: DevStack) -> dict[str, set[str]]:
    """The worker's metrics after a backup that succeeded and one that failed."""
    settings = stack.settings()
    client = await connect_with(settings)
    done = await start_export(client, settings, ExportRequest(project_id="acme"))
    await done.result()
    refused = await start_export(client, settings, ExportRequest(project_id="initech"))
    with pytest.raises(WorkflowFailureError):
        await refused.result()  # SUSPENDED: fails at validation
    return scrape(stack.metrics_port)


def test_every_queried_metric_and_label_is_exported(exported: dict[str, set[str]]) -> None:
    for title, expr, legend in queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr}"
        missing = names - set(exported)
        assert not missing, f"{title}: the worker exports no {missing}"
        available = set().union(*(exported[n] for n in names))
        unknown = label_names(expr, legend) - available
        assert not unknown, f"{title}: {sorted(names)} carry no label {unknown}"


def test_variables_query_exported_labels(exported: dict[str, set[str]]) -> None:
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        for metric, label in LABEL_VALUES.findall(text):
            assert label in exported.get(metric, set()), f"${variable['name']}: {metric}/{label}"


def test_outcomes_are_counted_per_project(exported: dict[str, set[str]], stack: DevStack) -> None:
    """The backups counter has a series per project and outcome the dashboard can break down."""
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    series = [line for line in text.splitlines() if line.startswith("export_backup_backups{")]
    assert any('project_id="acme"' in s and 'outcome="backup.succeeded"' in s for s in series)
    assert any('project_id="initech"' in s and 'outcome="backup.failed"' in s for s in series)


# --- a real Prometheus (Debian's package, make prometheus) evaluates every query ----------------


def test_the_compose_prometheus_config_is_valid() -> None:
    assert shutil.which("promtool"), "`make prometheus` installs Debian's prometheus (promtool)"
    checked = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def prometheus(
    stack: DevStack, exported: dict[str, set[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus scraping the dev stack's worker every second, as compose's scrapes the
    worker service; its base URL once it holds two scrapes (what rate() needs)."""
    home = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    job: dict[str, Any] = {
        "job_name": "export-backup-worker",
        "scrape_interval": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{stack.metrics_port}"]}],
    }
    config.write_text(json.dumps({"scrape_configs": [job]}))  # JSON is YAML
    binary = shutil.which("prometheus")
    assert binary, "`make prometheus` installs Debian's prometheus"
    port = free_port()
    with (home / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **bound_to_parent(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_port(port, 60), (home / "prometheus.log").read_text()[-2000:]
        deadline = time.monotonic() + 60
        while not instant(url, 'count_over_time(up{job="export-backup-worker"}[1m]) >= 2'):
            assert time.monotonic() < deadline, "Prometheus did not scrape the worker twice"
            time.sleep(0.5)
        yield url
    finally:
        stop_process(proc)
        shutil.rmtree(home, ignore_errors=True)


def instant(url: str, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", f"{query}: {answer.get('error')}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def with_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def test_prometheus_answers_every_panel_query_with_series(prometheus: str) -> None:
    """Valid PromQL, and each query finds series: a typo in a metric or label name, or a
    matcher that never matches, gives an empty answer."""
    for title, expr, _ in queries():
        assert instant(prometheus, with_variables(expr)), f"{title}: no series for {expr}"
