# shellcheck shell=bash disable=SC2034  # the settings are used by the sourcing scripts
# Shared settings and helpers for slurm-up.sh and slurm-down.sh.
# Sourced, not executed. Everything here must run as root on a machine
# WITHOUT systemd: daemons are started directly and tracked by pid files.

CLUSTER=hpcbridge
NODE=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm          # slurmctld/ (StateSaveLocation) and slurmd/ (spool)

# Pid files; the slurm ones are set in slurm.conf/slurmdbd.conf below.
MUNGED_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
MARIADB_SOCK=/run/mysqld/mysqld.sock
SLURMDBD_PID=/run/slurmdbd.pid
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
SLURMRESTD_PID=/run/slurmrestd.pid

# slurmrestd's address, and the key that signs its clients' tokens.
RESTD_ADDR=127.0.0.1:6820
JWT_KEY=$STATE_DIR/jwt_hs256.key

# Local throw-away test database; the password only ever travels over the
# local socket.
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=hpcbridge-test-only

SERVICE_TAG=${SERVICE_TAG:-slurm-cluster}
# shellcheck source-path=SCRIPTDIR source=service-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as root, configs live in /etc)"
}

# proc_is PID NAME: true if PID is a live (not zombie) process named NAME.
# Checking the name guards against a stale pid file whose pid was recycled by
# an unrelated process.
proc_is() {
    local pid=$1 name=$2 stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # /proc/PID/stat is "PID (COMM) STATE ..."; COMM is at most 15 chars.
    [[ $stat == "$pid ($name) "* && $stat != "$pid ($name) Z"* ]]
}

# pidfile_pid PIDFILE: print the pid in PIDFILE (fails if missing/empty).
# The daemon may remove its pid file at any moment while exiting.
pidfile_pid() {
    local pid
    pid=$(tr -dc '0-9' 2>/dev/null <"$1") || return 1
    [[ -n $pid ]] && echo "$pid"
}

# pid_alive PIDFILE NAME: true if PIDFILE names a live process called NAME.
pid_alive() {
    local pid
    pid=$(pidfile_pid "$1") || return 1
    proc_is "$pid" "$2"
}

# stop_daemon PIDFILE NAME: SIGTERM the process from PIDFILE (only if it
# really is NAME) and wait up to 30 s for the process itself to exit (daemons
# remove their pid file before they finish shutting down), then SIGKILL.
stop_daemon() {
    local pidfile=$1 name=$2 pid i
    if ! pid=$(pidfile_pid "$pidfile") || ! proc_is "$pid" "$name"; then
        log "$name: not running"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        proc_is "$pid" "$name" || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    log "$name: did not exit after 30 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}
