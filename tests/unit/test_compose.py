"""Static checks of docker-compose.yml, Dockerfile, .dockerignore and deploy/.

No Docker engine runs where these tests run, so nothing is built or started: the checks catch what
`docker compose up` would otherwise reveal late (a missing file, an undeclared volume, a port
clash, a secret in plain text, a Dockerfile that copies something that is not there).
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from backup.settings import Settings
from backup.storage.s3_client import CREDENTIAL_ENV

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

DEV_DEFAULT_SECRET = "change-me"
SECRET_KEY = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|PRIVATE_KEY", re.IGNORECASE)
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@")


# --- helpers -------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    svcs = load_compose().get("services")
    assert isinstance(svcs, dict) and svcs, "docker-compose.yml declares no services"
    return svcs


def with_defaults(value: str) -> str:
    """Interpolate like compose would with an empty environment: `${X:-d}` -> d, `${X}` -> ''."""
    value = value.replace("$$", "\0")
    resolved = INTERPOLATION.sub(lambda m: m.group("arg") or "", value)
    return resolved.replace("\0", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_mounts(service: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(source, target, type) per mount; source None for an anonymous volume."""
    mounts: list[tuple[str | None, str, str]] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((entry.get("source"), entry["target"], entry.get("type", "volume")))
            continue
        parts = entry.split(":")
        if len(parts) == 1:
            mounts.append((None, parts[0], "volume"))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        mounts.append((source, target, kind))
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host ip, host port, container port, protocol) for each published port."""
    ports: list[tuple[str, int, int, str]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is None:
                continue
            ip = with_defaults(str(entry.get("host_ip", "0.0.0.0")))
            published = int(with_defaults(str(entry["published"])))
            ports.append((ip, published, int(entry["target"]), entry.get("protocol", "tcp")))
            continue
        spec, _, protocol = with_defaults(str(entry)).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: docker picks an ephemeral host port
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        assert "-" not in parts[-2], f"port ranges are not used here: {entry!r}"
        ports.append((ip, int(parts[-2]), int(parts[-1]), protocol or "tcp"))
    return ports


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored by docker too
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    result = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def copy_sources() -> list[str]:
    """Repository paths the Dockerfile COPYs/ADDs from the build context."""
    sources: list[str] = []
    for instruction, args in dockerfile_instructions():
        if instruction not in {"COPY", "ADD"}:
            continue
        words = json.loads(args) if args.startswith("[") else args.split()
        if any(word.startswith("--from=") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        assert len(words) >= 2, f"malformed {instruction} {args}"
        sources.extend(words[:-1])
    return sources


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def is_dockerignored(path: str) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a match on a parent counts."""
    path = path.strip("/").removeprefix("./")
    candidates = [path]
    parts = path.split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    ignored = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        bare = pattern.removeprefix("**/")
        for candidate in candidates:
            name = candidate.rsplit("/", 1)[-1]
            if fnmatch.fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(name, bare)
            ):
                ignored = not negate
    return ignored


def parse_duration(value: str) -> float:
    total = 0.0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value):
        total += float(amount) * units[unit]
    assert total > 0, f"unparsable duration {value!r}"
    return total


# --- docker-compose.yml --------------------------------------------------------------------------


def test_compose_parses_with_expected_services() -> None:
    expected = {
        "temporal-db",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "app-db",
        "s3",
        "worker",
        "prometheus",
        "grafana",
    }
    assert expected <= set(services()), f"missing services: {expected - set(services())}"


def test_every_service_has_an_image_or_a_buildable_context() -> None:
    for name, svc in services().items():
        build = svc.get("build")
        assert svc.get("image") or build, f"service {name} has neither image nor build"
        if build:
            spec = {"context": build} if isinstance(build, str) else build
            context = ROOT / spec.get("context", ".")
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            dockerfile = context / spec.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


def test_pulled_images_are_pinned() -> None:
    for name, svc in services().items():
        if svc.get("build"):
            continue
        image = svc["image"]
        reference = image.rsplit("/", 1)[-1]
        assert ":" in reference or "@sha256:" in image, f"{name}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image} uses :latest"


def test_depends_on_targets_exist_and_conditions_can_be_met() -> None:
    svcs = services()
    for name, svc in svcs.items():
        for target, condition in depends_on(svc).items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name}: unknown condition {condition}"
            if condition == "service_healthy":
                assert svcs[target].get("healthcheck"), (
                    f"{name} waits for {target} to be healthy but {target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                restart = str(svcs[target].get("restart", "no"))
                assert restart in {"no", "on-failure"} or restart.startswith("on-failure:"), (
                    f"{name} waits for one-shot {target} to complete, but restart={restart} "
                    "would keep restarting it"
                )


def test_named_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(load_compose().get("volumes") or {})
    for name, svc in services().items():
        for source, target, kind in volume_mounts(svc):
            assert target.startswith("/"), f"{name}: mount target {target} is not absolute"
            if source is None:
                continue
            if kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared"
            elif source.startswith("."):
                path = (ROOT / source).resolve()
                assert path.exists(), f"{name}: bind-mounted {source} does not exist"
                assert ROOT in path.parents, f"{name}: {source} points outside the repository"


def test_published_host_ports_do_not_collide() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, svc in services().items():
        for _ip, host_port, _container_port, protocol in published_ports(svc):
            key = (host_port, protocol)
            assert key not in seen, f"host port {host_port}/{protocol}: {seen.get(key)} and {name}"
            seen[key] = name


def test_secrets_are_never_literals() -> None:
    """A secret is an interpolation; its only allowed default is the dev placeholder."""

    def check(where: str, value: str) -> None:
        matches = list(INTERPOLATION.finditer(value))
        assert len(matches) == 1 and matches[0].group(0) == value, (
            f"{where}: secret must be a ${{VAR}} reference, got {value!r}"
        )
        default = matches[0].group("arg")
        assert default in (None, DEV_DEFAULT_SECRET), (
            f"{where}: a secret's default may only be {DEV_DEFAULT_SECRET!r}"
        )

    for name, svc in services().items():
        for key, value in environment(svc).items():
            if SECRET_KEY.search(key):
                check(f"{name}.{key}", value)
            url = URL_USERINFO.match(value)
            if url and url.group("password") is not None:
                check(f"{name}.{key} (URL password)", url.group("password"))


def test_worker_environment() -> None:
    env = environment(services()["worker"])
    for key in (
        "DATABASE_URL",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_TASK_QUEUE",
        "HOST_ID",
        "SPOOL_DIR",
        "STORAGE_BACKEND",
        "LOCAL_STORAGE_DIR",
        "METRICS_PORT",
    ):
        assert env.get(key), f"worker environment lacks {key}"
    assert "${APP_DB_PASSWORD:-change-me}@app-db:5432" in env["DATABASE_URL"]
    assert env["TEMPORAL_TASK_QUEUE"] == "export-backup"

    svcs = services()
    host, _, port = env["TEMPORAL_ADDRESS"].partition(":")
    assert host in svcs and port == "7233", "TEMPORAL_ADDRESS must name the temporal service"
    assert any(p[2] == int(env["METRICS_PORT"]) for p in published_ports(svcs["worker"])), (
        "the worker's METRICS_PORT is not published"
    )


def test_worker_spool_and_storage_are_durable_named_volumes() -> None:
    worker = services()["worker"]
    env = environment(worker)
    named = {
        target for source, target, kind in volume_mounts(worker) if source and kind == "volume"
    }
    for key in ("SPOOL_DIR", "LOCAL_STORAGE_DIR"):
        assert env[key] in named, f"{key}={env[key]} is not on a named volume: lost on recreate"


def test_worker_lifecycle() -> None:
    worker = services()["worker"]
    assert worker.get("restart") == "unless-stopped"
    assert depends_on(worker).get("temporal-setup") == "service_completed_successfully"
    assert depends_on(worker).get("app-db") == "service_healthy"
    command = worker.get("command")
    assert command in (["python", "worker.py"], "python worker.py")
    grace = parse_duration(str(worker.get("stop_grace_period", "10s")))
    drain = float(environment(worker).get("SHUTDOWN_GRACE_SECONDS", "60"))
    assert grace >= drain + 10, (
        f"stop_grace_period {grace}s leaves no margin over SHUTDOWN_GRACE_SECONDS {drain}s"
    )


def test_worker_mentions_the_coming_s3_settings() -> None:
    text = COMPOSE_FILE.read_text()
    for key in ("S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert re.search(rf"^\s*#\s*{key}:", text, re.MULTILINE), f"no commented {key} line"


def variables_the_worker_reads() -> set[str]:
    """Settings' environment names (field names, or their aliases) and the AWS credential chain
    that boto reads for S3 (backup.storage.s3_client.CREDENTIAL_ENV)."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names = set(CREDENTIAL_ENV)
    for field_name, field in Settings.model_fields.items():
        names.add((prefix + field_name).upper())
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias.upper())
            elif isinstance(alias, AliasChoices):
                names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
    return names


def worker_environment_names() -> dict[str, str]:
    """Every variable the compose file gives the worker, with the commented alternatives in its
    environment block (meant to be uncommented), each with where it was found."""
    names = {key: "worker.environment" for key in environment(services()["worker"])}
    text = COMPOSE_FILE.read_text()
    worker = re.search(r"^  worker:\n((?:(?:    .*)?\n)*)", text, re.MULTILINE)
    assert worker, "no worker service block"
    block = re.search(r"^    environment:\n((?:      .*\n)*)", worker.group(1), re.MULTILINE)
    assert block, "no environment block in the worker service"
    for key in re.findall(r"^ +#\s*([A-Z][A-Z0-9_]*):\s", block.group(1), re.MULTILINE):
        names.setdefault(key, "worker.environment (commented)")
    return names


def dockerfile_environment_names() -> set[str]:
    names: set[str] = set()
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            names |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    return names


def test_every_worker_variable_is_one_the_worker_reads() -> None:
    """A variable the worker never reads is silently ignored (S3_ACCESS_KEY_ID instead of
    AWS_ACCESS_KEY_ID left the worker without S3 credentials)."""
    reads = variables_the_worker_reads()
    assert {"DATABASE_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID"} <= reads  # the derivation works
    unread = {key: where for key, where in worker_environment_names().items() if key not in reads}
    assert not unread, f"the worker reads none of {unread}"
    # The Dockerfile's own: Python's and pip's, and settings.
    interpreter = {
        name for name in dockerfile_environment_names() if name.startswith(("PYTHON", "PIP_"))
    }
    assert dockerfile_environment_names() - interpreter <= reads


def test_temporal_setup_registers_the_search_attributes() -> None:
    setup = services()["temporal-setup"]
    assert setup["image"].startswith("temporalio/admin-tools:")
    assert depends_on(setup).get("temporal") == "service_healthy"
    env = environment(setup)
    assert env.get("TEMPORAL_ADDRESS") == "temporal:7233"
    assert env.get("TEMPORAL_NAMESPACE") == "default"
    scripts = [ROOT / src for src, _t, kind in volume_mounts(setup) if kind == "bind" and src]
    text = "\n".join(path.read_text() for path in scripts if path.suffix == ".sh")
    for attribute in ("ProjectId", "BackupStep"):
        assert attribute in text, f"temporal-setup does not register {attribute}"
    assert "search-attribute create" in text and "--type Keyword" in text


def test_temporal_server_settings() -> None:
    svcs = services()
    temporal = svcs["temporal"]
    env = environment(temporal)
    assert env.get("DB") == "postgres12"
    assert env.get("POSTGRES_SEEDS") in svcs
    assert env.get("BIND_ON_IP") == "0.0.0.0", "the server would listen on its loopback only"
    assert any(p[1:3] == (7233, 7233) for p in published_ports(temporal))
    config_path = env["DYNAMIC_CONFIG_FILE_PATH"]
    mounted = {t: s for s, t, kind in volume_mounts(temporal) if kind == "bind" and s}
    assert config_path in mounted, "DYNAMIC_CONFIG_FILE_PATH is not the mounted file"
    config = yaml.safe_load((ROOT / mounted[config_path]).read_text())
    for key, entries in config.items():
        assert isinstance(entries, list) and all("value" in e for e in entries), key
    # Server, admin-tools (schema + setup) must be the same release.
    versions = {
        svc["image"].rsplit(":", 1)[1]
        for svc in svcs.values()
        if svc.get("image", "").startswith(("temporalio/server:", "temporalio/admin-tools:"))
    }
    assert len(versions) == 1, f"Temporal server and admin-tools versions differ: {versions}"


def test_temporal_ui() -> None:
    ui = services()["temporal-ui"]
    assert environment(ui).get("TEMPORAL_ADDRESS") == "temporal:7233"
    assert any(p[1:3] == (8233, 8080) for p in published_ports(ui))


def test_postgres_data_volumes_match_the_image_layout() -> None:
    """postgres:18+ refuses a volume on /var/lib/postgresql/data; older images need exactly it."""
    for name, svc in services().items():
        match = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", svc.get("image", ""))
        if not match:
            continue
        major = int(match.group(1))
        expected = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
        targets = {t for s, t, kind in volume_mounts(svc) if kind == "volume" and s}
        assert expected in targets, f"{name} ({svc['image']}): data volume must mount {expected}"


def test_app_db_seeds_the_control_plane() -> None:
    app_db = services()["app-db"]
    mounts = {t: s for s, t, kind in volume_mounts(app_db) if kind == "bind" and s}
    init_dir = ROOT / mounts["/docker-entrypoint-initdb.d"]
    sql_text = "\n".join(p.read_text() for p in sorted(init_dir.glob("*.sql")))
    assert "control_plane.projects" in sql_text
    for column in ("id", "name", "status", "schema_name"):
        assert re.search(rf"^\s*{column}\s", sql_text, re.MULTILINE), f"no {column} column"


def test_s3_store_creates_the_backups_bucket() -> None:
    s3 = services()["s3"]
    command = s3.get("command")
    text = " ".join(command) if isinstance(command, list) else str(command)
    assert "-bucket=backups" in text
    assert any(p[2] == 8333 for p in published_ports(s3))


def test_deploy_shell_scripts_parse() -> None:
    scripts = sorted((ROOT / "deploy").rglob("*.sh"))
    assert scripts, "no deploy scripts found"
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh\n"), f"{script}: images run /bin/sh"
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_dockerfile_copies_only_existing_paths() -> None:
    missing = [src for src in copy_sources() if not (ROOT / src).exists()]
    assert not missing, f"the Dockerfile copies paths that do not exist: {missing}"


def test_dockerfile_copies_are_not_dockerignored() -> None:
    ignored = [src for src in copy_sources() if is_dockerignored(src)]
    assert not ignored, f".dockerignore excludes what the Dockerfile copies: {ignored}"


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    for path in (".venv", ".dev", ".git", "tests", "node_modules", ".pytest_cache", ".env"):
        assert is_dockerignored(path), f"{path} would be sent to the build context"
    assert is_dockerignored("backup/__pycache__/models.cpython-311.pyc")


def test_dockerfile_installs_every_package_pyproject_declares() -> None:
    """`pip install .` needs every package, module and the readme that pyproject names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_cfg = project["tool"]["setuptools"]
    copied = {src.rstrip("/").removeprefix("./") for src in copy_sources()}
    needed = {pkg.split(".")[0] for pkg in setuptools_cfg.get("packages", [])}
    needed |= {f"{module}.py" for module in setuptools_cfg.get("py-modules", [])}
    needed.add("pyproject.toml")
    if isinstance(project["project"].get("readme"), str):
        needed.add(project["project"]["readme"])
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"


def test_dockerfile_runtime() -> None:
    instructions = dockerfile_instructions()
    base = next(args for instr, args in instructions if instr == "FROM")
    assert base.startswith("python:3.11-slim"), base
    assert not base.endswith(":latest")
    users = [args for instr, args in instructions if instr == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}, "the worker must not run as root"
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    cmd = [args for instr, args in instructions if instr == "CMD"][-1]
    assert json.loads(cmd) == ["python", "worker.py"], "CMD must be exec form (signals reach it)"
    runs = " ".join(args for instr, args in instructions if instr == "RUN")
    assert "--no-cache-dir" in runs
    assert "/var/lib/export-backup" in runs and "chown" in runs


# --- metrics: Prometheus and Grafana ------------------------------------------------------------


def container_file(service: dict[str, Any], container_path: str) -> Path:
    """The repository file behind `container_path` in `service`, through its bind mounts."""
    for source, target, _ in volume_mounts(service):
        inside = container_path == target or container_path.startswith(target.rstrip("/") + "/")
        if source and source.startswith(".") and inside:
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    raise AssertionError(f"nothing of the repository is mounted at {container_path}")


def test_prometheus_scrapes_the_worker() -> None:
    svcs = services()
    prometheus = svcs["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if "=" in arg)
    config_file = container_file(prometheus, flags["--config.file"])
    assert config_file == ROOT / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    worker = environment(svcs["worker"])
    metrics = f"worker:{worker['METRICS_PORT']}"
    assert metrics in targets, f"Prometheus scrapes {targets}, not the worker at {metrics}"
    assert worker.get("METRICS_HOST") == "0.0.0.0", "Prometheus could not reach the worker"
    data_dir = flags["--storage.tsdb.path"]
    assert any(t == data_dir and kind == "volume" for _, t, kind in volume_mounts(prometheus))


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    svcs = services()
    grafana = svcs["grafana"]
    env = environment(grafana)
    assert depends_on(grafana).get("prometheus") == "service_healthy"
    provisioning = container_file(grafana, "/etc/grafana/provisioning")  # where Grafana looks
    assert provisioning == ROOT / "deploy/grafana/provisioning"

    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (prometheus,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    ports = {target for _, _, target, _ in published_ports(svcs["prometheus"])}
    assert prometheus["url"] in {f"http://prometheus:{port}" for port in ports}

    providers = yaml.safe_load((provisioning / "dashboards/export-backup.yml").read_text())
    folder = container_file(grafana, providers["providers"][0]["options"]["path"])
    assert folder == ROOT / "deploy/grafana/dashboards"
    home = container_file(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == folder and home.is_file()
    variables = {v["name"]: v for v in json.loads(home.read_text())["templating"]["list"]}
    assert variables["datasource"]["query"] == prometheus["type"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:-")
