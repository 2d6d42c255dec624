# shellcheck shell=bash
# Helpers every tests/cluster service script shares (Slurm, sshd, PostgreSQL). Sourced, not
# executed. The sourcing script sets SERVICE_TAG, which prefixes its messages.

# Messages carry the seconds since the script started, to see where startup time goes.
_T0=${EPOCHREALTIME/./}
_elapsed() {
    local us=$((${EPOCHREALTIME/./} - _T0))
    printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}
log() { printf '[%s +%ss] %s\n' "$SERVICE_TAG" "$(_elapsed)" "$*" >&2; }
die() { printf '[%s +%ss] ERROR: %s\n' "$SERVICE_TAG" "$(_elapsed)" "$*" >&2; exit 1; }

# install_file DEST MODE [OWNER] < CONTENT: replace DEST only when the content differs (so
# unchanged configs do not trigger restarts). Returns 0 when the file changed, 1 when it was
# already up to date.
install_file() {
    local dest=$1 mode=$2 owner=${3:-} tmp
    tmp=$(mktemp "$dest.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    [[ -z $owner ]] || chown "$owner" "$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        chmod "$mode" "$dest"
        return 1
    fi
    mv -f "$tmp" "$dest"
    log "wrote $dest"
    return 0
}
