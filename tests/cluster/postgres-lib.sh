# shellcheck shell=bash disable=SC2034  # the settings are used by the sourcing scripts
# Shared settings and helpers for postgres-up.sh and postgres-down.sh.
# Sourced, not executed. Runs as root on a machine WITHOUT systemd: the server
# is a private cluster of its own (not Debian's "main"), started with pg_ctl.

PG_PORT=${PG_TEST_PORT:-55432}
PG_HOST=127.0.0.1
PG_BASE=/var/lib/hpcbridge-test
PG_DATA=$PG_BASE/postgres
PG_LOG=$PG_BASE/postgres.log
PG_SOCKET_DIR=/run/hpcbridge-postgres   # /run is a tmpfs: recreated at every start

# Throw-away test role and database; the URL the tests use is
# postgresql+psycopg://hpcbridge:hpcbridge@127.0.0.1:55432/hpcbridge
PG_ROLE=hpcbridge
PG_PASS=hpcbridge
PG_DB=hpcbridge

SERVICE_TAG=postgres
# shellcheck source-path=SCRIPTDIR source=service-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (the server runs as the postgres user)"
}

# pg_bin_dir: the newest installed server's bin folder (Debian keeps each
# major version under /usr/lib/postgresql/N); fails when none is installed.
pg_bin_dir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' \
        -printf '%h\n' 2>/dev/null | sort -V | tail -n1)
    [[ -n $dir ]] && echo "$dir"
}

# as_postgres CMD...: run a server tool as the postgres user.
as_postgres() { runuser -u postgres -- "$@"; }

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}
