#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server from Debian's packages.
# Installs the server when missing, creates a cluster in a temporary directory, starts it
# on a free loopback port, exports DATABASE_URL for the command, and removes it all after.
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
set -euo pipefail

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(find_bin)" ] || [ ! -x "$(find_bin)/initdb" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "Installing PostgreSQL from Debian's packages for the tests" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PGBIN="$(find_bin)"

# PostgreSQL refuses to run as root: the cluster then belongs to the postgres user.
AS=()
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); fi

WORK="$(mktemp -d /tmp/chatsite-pg.XXXXXX)"
chmod 755 "$WORK"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$WORK"; fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

cleanup() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w \
  -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
"${AS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres chatsite

export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/chatsite"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2
"$@"
