#!/usr/bin/env bash
# The whole test suite, as CI runs it: a virtualenv with the dev extras, the test services
# (the real Slurm cluster, a loopback sshd, PostgreSQL: installed with apt and started if
# needed, so run as root), lint, types, then pytest with coverage. Extra arguments go to
# pytest (e.g. tests/run.sh -k contract).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# shellcheck source=cluster/venv.sh
source tests/cluster/venv.sh
make_venv dev

if [[ $(id -u) -eq 0 ]]; then
    bash tests/cluster/slurm-up.sh
    bash tests/cluster/sshd-up.sh
    bash tests/cluster/postgres-up.sh
else
    echo "not root: using Slurm, sshd and PostgreSQL only if already running (tests/cluster/)" >&2
fi

echo "== ruff" && .venv/bin/ruff check hpcbridge tests benchmarks examples
echo "== ruff format" && .venv/bin/ruff format --check hpcbridge tests benchmarks examples
echo "== mypy" && .venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -n 4 -m "not disruptive" --cov=hpcbridge --cov-report= --cov-fail-under=0 "$@"
# Tests that take the Slurm node down would fail everything running beside them: they run
# alone, after the rest. Exit 5 means none were selected (e.g. tests/run.sh -k pbs).
echo "== pytest (disruptive, alone)"
status=0
.venv/bin/pytest -m disruptive --cov=hpcbridge --cov-append --cov-report= --cov-fail-under=0 \
    "$@" || status=$?
[[ $status -eq 0 || $status -eq 5 ]] || exit "$status"
# One coverage report, and its threshold (pyproject.toml), over both runs.
.venv/bin/coverage report
