#!/usr/bin/env bash
# A PostgreSQL server on loopback for the database tests (the server's PostgreSQL path goes
# through the same sqlx code as SQLite). Installs Debian's package if needed, starts the
# cluster, makes a `soulbox` role and database (idempotent), and prints the URL.
set -euo pipefail

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  # Stale package lists on a fresh machine: refresh them and try again.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
fi
cluster=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1 " " $2}')
if [ -z "$cluster" ]; then
  pg_createcluster 15 main >&2
  cluster="15 main"
fi
# shellcheck disable=SC2086
pg_ctlcluster $cluster start >&2 2>/dev/null || true
port=$(pg_lsclusters --no-header | awk 'NR == 1 {print $3}')
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.1
done
as_postgres() { su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1 $*" >&2; }
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'soulbox'\" -p $port" | grep -q 1; then
  as_postgres "-c \"CREATE ROLE soulbox LOGIN PASSWORD 'soulbox'\""
fi
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'soulbox_test'\" -p $port" | grep -q 1; then
  as_postgres "-c \"CREATE DATABASE soulbox_test OWNER soulbox\""
fi
echo "postgres://soulbox:soulbox@127.0.0.1:$port/soulbox_test"
