#!/usr/bin/env bash
# Stop the single-node test cluster started by slurm-up.sh. Idempotent:
# daemons that are not running are skipped. Job/accounting state is kept, so
# slurm-up.sh brings back the same cluster (running jobs are lost).
#
#   sudo tests/cluster/slurm-down.sh          # stop Slurm, MariaDB and munged
#   sudo tests/cluster/slurm-down.sh --slurm-only   # keep MariaDB and munged
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=slurm-lib.sh
source "$HERE/slurm-lib.sh"

main() {
    require_root
    local slurm_only=false
    [[ ${1:-} == --slurm-only ]] && slurm_only=true

    # Reverse start order: compute node, controller, accounting, then the
    # services they depend on.
    stop_daemon "$SLURMRESTD_PID" slurmrestd
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$SLURMCTLD_PID" slurmctld
    stop_daemon "$SLURMDBD_PID" slurmdbd
    if ! $slurm_only; then
        stop_daemon "$MARIADB_PID" mariadbd
        stop_daemon "$MUNGED_PID" munged
    fi
    log "stopped"
}

main "$@"
