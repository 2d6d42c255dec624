#!/usr/bin/env bash
# Make (or refresh) the project's virtualenv in .venv with the given extras, on a fresh
# Debian/Ubuntu machine too: python3-venv is installed with apt when it is missing.
#
#   source tests/cluster/venv.sh && make_venv dev
set -euo pipefail

make_venv() {
    local extras=${1:-} root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "python3 with venv is needed: sudo apt-get install python3-venv" >&2
            return 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    [[ -x $root/.venv/bin/python ]] || python3 -m venv "$root/.venv"
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check \
        -e "$root${extras:+[$extras]}"
}
