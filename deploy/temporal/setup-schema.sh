#!/bin/sh
# One-shot (admin-tools image): install or upgrade Temporal's schemas in temporal-db, the job the
# deprecated auto-setup image did at boot. Safe on every `docker compose up`: setup-schema only
# creates the version tables when missing, update-schema applies only the versions not yet applied.
# The password comes from SQL_PASSWORD (read by temporal-sql-tool), never from the command line.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
port="${DB_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

tries=0
until nc -z "$POSTGRES_SEEDS" "$port"; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "temporal-db not reachable at $POSTGRES_SEEDS:$port" >&2; exit 1; }
  sleep 2
done

migrate() { # DATABASE SCHEMA_SUBDIR
  echo "schema of database $1"
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" \
    --db "$1" setup-schema -v 0.0
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" \
    --db "$1" update-schema -d "$schemas/$2/versioned"
}

migrate temporal temporal
migrate temporal_visibility visibility
echo "Temporal schemas are up to date"
