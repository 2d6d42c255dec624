#!/usr/bin/env bash
# Stop the test sshd servers started by sshd-up.sh, and the sessions they serve. Idempotent.
# Keys, known_hosts and configs are kept, so sshd-up.sh brings back the same servers.
#
#   sudo tests/cluster/sshd-down.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVICE_TAG=sshd
# shellcheck source-path=SCRIPTDIR source=slurm-lib.sh
source "$HERE/slurm-lib.sh" # _elapsed, require_root, pidfile_pid, proc_is, stop_daemon

DIR=/var/lib/hpcbridge-test/sshd

main() {
    local name pid
    require_root
    for name in target gateway; do
        # A stopped listener leaves its sessions running (as OpenSSH does on a restart): end
        # them too, by parent pid, so "down" means no test connection survives.
        if pid=$(pidfile_pid "$DIR/$name.pid" 2>/dev/null) && proc_is "$pid" sshd; then
            pkill -TERM -P "$pid" sshd 2>/dev/null || true
        fi
        stop_daemon "$DIR/$name.pid" sshd
    done
    log "stopped"
}

main "$@"
