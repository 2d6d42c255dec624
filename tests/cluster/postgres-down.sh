#!/usr/bin/env bash
# Stop the PostgreSQL test server started by postgres-up.sh. Idempotent. The
# data directory is kept; `--wipe` also deletes it (the next postgres-up.sh
# starts from an empty cluster).
#
#   sudo tests/cluster/postgres-down.sh [--wipe]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=postgres-lib.sh
source "$HERE/postgres-lib.sh"

main() {
    require_root
    if PG_BIN=$(pg_bin_dir) && pg_running; then
        log "stopping PostgreSQL"
        as_postgres "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w >/dev/null
    else
        log "PostgreSQL: not running"
    fi
    if [[ ${1:-} == --wipe ]]; then
        log "removing $PG_DATA"
        rm -rf "$PG_DATA" "$PG_LOG"
    fi
    log "stopped"
}

main "$@"
