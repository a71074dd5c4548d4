#!/usr/bin/env bash
# Prints a DATABASE_URL for the test suite, making sure a Postgres server answers there:
#   1. $DATABASE_URL, if set (must answer);
#   2. a server already listening on 127.0.0.1:5432 that accepts user postgres without a
#      password (as on these machines);
#   3. otherwise our own cluster under /var/tmp/auditstream-pg-<uid> on port 55432, trust auth,
#      installing Debian's postgresql package first if no server binaries exist.
# Each test then creates a schema of its own in that database. AUDITSTREAM_PG_OWN=1 skips 2.
set -euo pipefail

answers() { pg_isready -q -d "$1" 2>/dev/null && psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

if [[ -n "${DATABASE_URL:-}" ]]; then
  answers "$DATABASE_URL" || { echo "DATABASE_URL is set but no Postgres answers there" >&2; exit 1; }
  echo "$DATABASE_URL"; exit 0
fi

shared=postgres://postgres@127.0.0.1:5432/postgres
if [[ -z "${AUDITSTREAM_PG_OWN:-}" ]] && command -v psql >/dev/null && answers "$shared"; then
  echo "$shared"; exit 0
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  echo "installing postgresql (Debian package) for the store tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

port=${AUDITSTREAM_PG_PORT:-55432}
# Outside $HOME: the postgres user must be able to reach it when we run as root.
dir=${AUDITSTREAM_PG_DIR:-/var/tmp/auditstream-pg-$(id -u)}
url=postgres://postgres@127.0.0.1:$port/postgres
# Postgres refuses to run as root: run it as the postgres user the package created.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir"
[[ $(id -u) == 0 ]] && chown postgres "$dir"
if [[ ! -f "$dir/data/PG_VERSION" ]]; then
  as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >&2
fi
if ! PATH="$bindir:$PATH" answers "$url"; then
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k /tmp" start >&2
fi
PATH="$bindir:$PATH" answers "$url" || { echo "cannot start Postgres; see $dir/server.log" >&2; exit 1; }
echo "$url"
