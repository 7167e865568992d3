#!/usr/bin/env bash
# A real PostgreSQL server on localhost for the multi-worker Optuna tests (tests/search/test_optuna_workers.py).
# Installs the Debian package if missing, starts the newest cluster (creating one if there is none), creates
# the role and database `autoprune` (idempotent) and prints the URL; .ci/run exports it as
# AUTOPRUNE_TEST_POSTGRES_URL. Needs root (CI runs as root); fails loudly if the server does not come up.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | grep -q "^${version} "; then
  pg_createcluster "$version" main >&2
fi
cluster="$(pg_lsclusters -h | awk -v v="$version" '$1 == v {print $2; exit}')"
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v {print $3; exit}')"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v {print $4; exit}' | grep -q online; then
  pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2
psql_() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
[ "$(psql_ "SELECT 1 FROM pg_roles WHERE rolname='autoprune'")" = 1 ] ||
  psql_ "CREATE ROLE autoprune LOGIN PASSWORD 'autoprune'" >&2
[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname='autoprune'")" = 1 ] ||
  su postgres -c "createdb -p $port -O autoprune autoprune" >&2
echo "postgresql://autoprune:autoprune@127.0.0.1:${port}/autoprune"
