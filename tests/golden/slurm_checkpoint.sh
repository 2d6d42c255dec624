#!/bin/bash
#SBATCH --job-name=ckpt-job
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${SLURM_JOB_ID}"
export HPCBRIDGE_ARRAY_INDEX="${SLURM_ARRAY_TASK_ID:-}"
hpcbridge_requeue() { scontrol requeue "$SLURM_JOB_ID"; }

# hpcbridge checkpoint wrapper: the job runs under it; checkpoints go to the directory below.
hpcbridge_ck_dir='/scratch/run 1/checkpoints'
case $hpcbridge_ck_dir in /*) ;; *) hpcbridge_ck_dir=$PWD/$hpcbridge_ck_dir ;; esac
hpcbridge_ck_log() { printf 'hpcbridge checkpoint: %s\n' "$*" >&2; }
mkdir -p -- "$hpcbridge_ck_dir" || { hpcbridge_ck_log "cannot create $hpcbridge_ck_dir"; exit 1; }
export HPCBRIDGE_CHECKPOINT_DIR=$hpcbridge_ck_dir
hpcbridge_ck_job=${HPCBRIDGE_JOB_ID:-$$}
hpcbridge_ck_node=$(hostname 2>/dev/null || uname -n)
hpcbridge_ck_timer=
hpcbridge_ck_work=

# One line per event: kind, UTC epoch, job id, attempt, node, then the kind's own fields.
hpcbridge_ck_event() {
    local IFS=$'\t'
    local fields=("$1" "$(date +%s)" "$hpcbridge_ck_job" "$hpcbridge_ck_attempt" "$hpcbridge_ck_node")
    printf '%s\n' "${fields[*]}${2+$'\t'}${*:2}" >>"$hpcbridge_ck_dir/attempts.log"
}

hpcbridge_ck_meta() {
    local key value
    while IFS='=' read -r key value; do
        [ "$key" = "$2" ] && printf '%s' "$value" && return 0
    done <"$1/.hpcbridge-meta"
    return 1
}

# Other users may write this directory and checkpoint sets are copied in, so nothing read from
# it is evaluated: a folder counts only under a name this wrapper gives (tested with [[ =~ ]],
# never inside $((...)), whose array subscripts bash would run), and a checkpoint is valid only
# when its manifest is exactly what the wrapper would write for its files now, so it can name
# nothing outside the checkpoint. hpcbridge/jobs/checkpoint.py applies the same rules.
hpcbridge_ck_named() {
    [[ ${1##*/} =~ ^(corrupt-)?ckpt-[0-9]{8}T[0-9]{6}Z-([0-9]{6,9})$ ]] && [ -d "$1" ] && [ ! -L "$1" ]
}

# The committed checkpoints, newest first (their names sort by time), in hpcbridge_ck_found.
hpcbridge_ck_list() {
    local LC_ALL=C entry
    hpcbridge_ck_found=()
    for entry in "$hpcbridge_ck_dir"/ckpt-*; do
        hpcbridge_ck_named "$entry" && hpcbridge_ck_found=("$entry" "${hpcbridge_ck_found[@]}")
    done
    return 0
}

# The manifest of the checkpoint in the current directory, as sha256sum writes it.
hpcbridge_ck_manifest() {
    find . -type f ! -path ./.hpcbridge-manifest -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
}

hpcbridge_ck_verify() (
    cd -- "$1" 2>/dev/null && [ -f .hpcbridge-manifest ] && [ -f .hpcbridge-meta ] ||
        { echo "no manifest"; exit 1; }
    odd=$(find . ! -type f ! -type d -print -quit)
    [ -z "$odd" ] || { echo "$odd: not a regular file"; exit 1; }
    listed=$(LC_ALL=C sort .hpcbridge-manifest) found=$(hpcbridge_ck_manifest | LC_ALL=C sort)
    [ "$listed" = "$found" ] && exit 0
    odd=$(LC_ALL=C comm -23 <(printf '%s\n' "$listed") <(printf '%s\n' "$found") | head -n 1)
    [ -n "$odd" ] && { echo "${odd#*  }: missing, changed or outside the checkpoint"; exit 1; }
    odd=$(LC_ALL=C comm -13 <(printf '%s\n' "$listed") <(printf '%s\n' "$found") | head -n 1)
    echo "${odd#*  }: not in the manifest"
    exit 1
)

# The checkpoint command, in a subshell so that its exit or cd cannot end the wrapper.
hpcbridge_ck_command() (
kill -USR2 "$HPCBRIDGE_WORK_PID"; sleep 5; cp *.h5 "$HPCBRIDGE_CHECKPOINT_TMP"
)

# Take one checkpoint: the command fills a fresh temp dir, the wrapper adds the manifest,
# syncs, then renames it into place (atomic), and prunes to the newest 2.
hpcbridge_ck_save() {
    local reason=$1 lock=$hpcbridge_ck_dir/.lock tries=0 tmp status seq=0 old number name now
    until mkdir -- "$lock" 2>/dev/null; do
        [ "$reason" = periodic ] && return 0  # one is being taken right now
        tries=$((tries + 1))
        [ "$tries" -gt 300 ] && { hpcbridge_ck_log "$lock is held for 30 s; no checkpoint"; return 1; }
        sleep 0.1
    done
    tmp=$(mktemp -d -- "$hpcbridge_ck_dir/.tmp-XXXXXX") || { rmdir -- "$lock"; return 1; }
    status=0
    HPCBRIDGE_CHECKPOINT_TMP=$tmp HPCBRIDGE_CHECKPOINT_REASON=$reason \
        HPCBRIDGE_WORK_PID=$hpcbridge_ck_work hpcbridge_ck_command || status=$?
    if [ "$status" -ne 0 ]; then
        hpcbridge_ck_log "the checkpoint command failed (exit $status); no checkpoint taken"
        rm -rf -- "$tmp"; rmdir -- "$lock"
        return 1
    fi
    for old in "$hpcbridge_ck_dir"/ckpt-* "$hpcbridge_ck_dir"/corrupt-ckpt-*; do
        hpcbridge_ck_named "$old" || continue
        number=$((10#${BASH_REMATCH[2]}))  # six to nine digits, matched above
        [ "$number" -gt "$seq" ] && seq=$number
    done
    now=$(date +%s)
    name=ckpt-$(date -u -d "@$now" +%Y%m%dT%H%M%SZ)-$(printf '%06d' $((seq + 1)))
    printf 'created=%s\njob=%s\nattempt=%s\nnode=%s\nreason=%s\n' "$now" "$hpcbridge_ck_job" \
        "$hpcbridge_ck_attempt" "$hpcbridge_ck_node" "$reason" >"$tmp/.hpcbridge-meta"
    if ! (cd -- "$tmp" && hpcbridge_ck_manifest >.hpcbridge-manifest &&
        find . -type f -exec sync -- {} +) ||
        ! mv -T -- "$tmp" "$hpcbridge_ck_dir/$name"; then
        hpcbridge_ck_log "could not commit the checkpoint; no checkpoint taken"
        rm -rf -- "$tmp"; rmdir -- "$lock"
        return 1
    fi
    sync -- "$hpcbridge_ck_dir"
    hpcbridge_ck_event commit "$name" "$now" "$reason"
    hpcbridge_ck_list
    set -- "${hpcbridge_ck_found[@]:2}"
    [ $# -eq 0 ] || rm -rf -- "$@"
    rmdir -- "$lock"
}

# Earlier runs in the log: the attempt number, and the max_restarts guard. A job that an earlier
# run submitted again (its "continued" event names this job) goes on counting that run's
# attempts, so max_restarts bounds the whole chain. Read newest first, each link is met before
# the one it continues.
hpcbridge_ck_attempt=1
hpcbridge_ck_chain=" $hpcbridge_ck_job "
if [ -f "$hpcbridge_ck_dir/attempts.log" ]; then
    while IFS=$'\t' read -r hpcbridge_ck_kind _ hpcbridge_ck_logged _ _ hpcbridge_ck_next _; do
        [ "$hpcbridge_ck_kind" = continued ] &&
            [[ $hpcbridge_ck_chain == *" $hpcbridge_ck_next "* ]] &&
            hpcbridge_ck_chain+="$hpcbridge_ck_logged "
    done < <(tac -- "$hpcbridge_ck_dir/attempts.log")
    while IFS=$'\t' read -r hpcbridge_ck_kind _ hpcbridge_ck_logged _; do
        [ "$hpcbridge_ck_kind" = start ] &&
            [[ $hpcbridge_ck_chain == *" $hpcbridge_ck_logged "* ]] &&
            hpcbridge_ck_attempt=$((hpcbridge_ck_attempt + 1))
    done <"$hpcbridge_ck_dir/attempts.log"
fi
if [ $((hpcbridge_ck_attempt - 1)) -gt 5 ]; then
    hpcbridge_ck_log "job $hpcbridge_ck_job already ran $((hpcbridge_ck_attempt - 1)) times;" \
        "max_restarts is 5, so it will not start again"
    hpcbridge_ck_event refused 5
    exit 3
fi

# A run whose work ended with status 0 leaves "finished": the work is done, whoever asks again
# (a later segment of a chain, a resubmission) ends at once. Remove the file to run it anew.
if [ -e "$hpcbridge_ck_dir/finished" ]; then
    hpcbridge_ck_log "the work of $hpcbridge_ck_dir is finished ($(cat -- "$hpcbridge_ck_dir/finished")); nothing to do"
    exit 0
fi

# Nothing else writes here now: a temp dir or lock left behind is from a run that died.
for hpcbridge_ck_left in "$hpcbridge_ck_dir"/.tmp-* "$hpcbridge_ck_dir"/.lock; do
    [ -e "$hpcbridge_ck_left" ] || continue
    hpcbridge_ck_log "removing ${hpcbridge_ck_left##*/}, an unfinished checkpoint of an earlier run"
    rm -rf -- "$hpcbridge_ck_left"
done

# The newest checkpoint whose manifest verifies; a corrupt one is renamed, kept, and skipped.
unset HPCBRIDGE_CHECKPOINT
hpcbridge_ck_list
for hpcbridge_ck_try in "${hpcbridge_ck_found[@]}"; do
    if hpcbridge_ck_problem=$(hpcbridge_ck_verify "$hpcbridge_ck_try"); then
        export HPCBRIDGE_CHECKPOINT=$hpcbridge_ck_try
        break
    fi
    hpcbridge_ck_name=${hpcbridge_ck_try##*/}
    hpcbridge_ck_log "checkpoint $hpcbridge_ck_name is corrupt: ${hpcbridge_ck_problem//$'\n'/; };" \
        "kept as corrupt-$hpcbridge_ck_name; trying the one before it"
    mv -T -- "$hpcbridge_ck_try" "$hpcbridge_ck_dir/corrupt-$hpcbridge_ck_name"
    hpcbridge_ck_event corrupt "$hpcbridge_ck_name"
done

hpcbridge_work() {
./simulate --resume-from "${HPCBRIDGE_CHECKPOINT:-}"
}

hpcbridge_restart() {
./simulate --state "$HPCBRIDGE_CHECKPOINT/state.h5"
}

hpcbridge_ck_stop_timer() {
    [ -n "$hpcbridge_ck_timer" ] || return 0
    kill -TERM "$hpcbridge_ck_timer" 2>/dev/null || :
    wait "$hpcbridge_ck_timer" 2>/dev/null || :
    hpcbridge_ck_timer=
}

# The job's processes: the work subshell and everything under it, gathered before any dies.
hpcbridge_ck_tree() {
    local child
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do hpcbridge_ck_tree "$child"; done
    printf '%s\n' "$1"
}

hpcbridge_ck_stop_work() {
    [ -n "$hpcbridge_ck_work" ] || return 0
    kill -TERM $(hpcbridge_ck_tree "$hpcbridge_ck_work") 2>/dev/null || :
    wait "$hpcbridge_ck_work" 2>/dev/null || :
}

# At the warning signal: the last checkpoint, then requeue (or exit 0 for the next segment).
hpcbridge_ck_at_limit() {
    hpcbridge_ck_log "SIGUSR1: the time limit is near; checkpointing"
    hpcbridge_ck_stop_timer
    hpcbridge_ck_save limit || hpcbridge_ck_log "a restart will use the newest earlier checkpoint, if any"
    local next
    if ! declare -F hpcbridge_requeue >/dev/null; then
        hpcbridge_ck_log "this scheduler cannot requeue a job from inside it; exiting"
    elif hpcbridge_requeue; then
        hpcbridge_ck_log "requeued job $hpcbridge_ck_job"
    elif ! declare -F hpcbridge_resubmit >/dev/null; then
        hpcbridge_ck_log "requeue of job $hpcbridge_ck_job failed"
        hpcbridge_ck_stop_work
        exit 1
    elif next=$(hpcbridge_resubmit) && [ -n "$next" ]; then
        hpcbridge_ck_log "requeue of job $hpcbridge_ck_job refused (it takes operator rights);" \
            "the work continues from the checkpoint in job $next, which starts when this one ends"
        hpcbridge_ck_event continued "$next"
        hpcbridge_ck_stop_work
        exit 75
    else
        hpcbridge_ck_log "requeue of job $hpcbridge_ck_job refused, and submitting it again failed"
        hpcbridge_ck_stop_work
        exit 1
    fi
    hpcbridge_ck_stop_work
    exit 0
}
trap hpcbridge_ck_at_limit USR1
# Replaces the PBS template's EXIT trap, so it stops that template's signal timer too.
trap 'hpcbridge_ck_stop_timer; kill ${hpcbridge_signal_timer:-} 2>/dev/null || :' EXIT

if [ -n "${HPCBRIDGE_CHECKPOINT:-}" ]; then
    hpcbridge_ck_from=$(hpcbridge_ck_meta "$HPCBRIDGE_CHECKPOINT" created)
    [[ $hpcbridge_ck_from =~ ^[0-9]+$ ]] || hpcbridge_ck_from=-
    hpcbridge_ck_event start "${HPCBRIDGE_CHECKPOINT##*/}" "$hpcbridge_ck_from"
    hpcbridge_ck_log "attempt $hpcbridge_ck_attempt resumes from ${HPCBRIDGE_CHECKPOINT##*/}"
    hpcbridge_restart &
else
    hpcbridge_ck_event start - -
    [ "$hpcbridge_ck_attempt" -gt 1 ] &&
        hpcbridge_ck_log "attempt $hpcbridge_ck_attempt found no valid checkpoint; starting afresh"
    hpcbridge_work &
fi
hpcbridge_ck_work=$!
# The timer takes each checkpoint in a child of its own: its TERM trap then never fires while
# this shell runs a command substitution, which bash (5.2) can fail to parse around a trap
# ("unexpected EOF while looking for matching `)'"), leaving the timer running for ever.
(
    hpcbridge_ck_stopping= hpcbridge_ck_sleep=
    trap 'hpcbridge_ck_stopping=1; kill "$hpcbridge_ck_sleep" 2>/dev/null' TERM
    while [ -z "$hpcbridge_ck_stopping" ]; do
        sleep 3600 &
        hpcbridge_ck_sleep=$!
        wait "$hpcbridge_ck_sleep" || :
        [ -n "$hpcbridge_ck_stopping" ] || (hpcbridge_ck_save periodic) || :
    done
) &
hpcbridge_ck_timer=$!
# A trapped signal interrupts wait (status > 128) while the job still runs: wait again.
while :; do
    hpcbridge_ck_status=0
    wait "$hpcbridge_ck_work" || hpcbridge_ck_status=$?
    [ "$hpcbridge_ck_status" -gt 128 ] && kill -0 "$hpcbridge_ck_work" 2>/dev/null || break
done
hpcbridge_ck_stop_timer
if [ "$hpcbridge_ck_status" -eq 0 ]; then
    printf 'job %s attempt %s at %s\n' "$hpcbridge_ck_job" "$hpcbridge_ck_attempt" "$(date +%s)" \
        >"$hpcbridge_ck_dir/finished"
    hpcbridge_ck_event finished
fi
exit "$hpcbridge_ck_status"
