#!/usr/bin/env bash
# The whole test suite, as CI runs it: a virtualenv with the dev extras, the test services
# (the real Slurm cluster, a loopback sshd, PostgreSQL: installed with apt and started if
# needed, which takes root), lint, types, then pytest with coverage. Extra arguments go to
# pytest (e.g. tests/run.sh -k contract).
#
# Every stage runs even when an earlier one failed, so one failing test still leaves the
# disruptive tests and the coverage report to run; a summary lists each stage, and the exit
# status is non-zero when any failed.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

# shellcheck source=cluster/venv.sh
source tests/cluster/venv.sh
make_venv dev || exit 1
set +e  # venv.sh turns it on; from here each stage's status is collected instead

if [[ $(id -u) -eq 0 ]]; then
    bash tests/cluster/slurm-up.sh && bash tests/cluster/sshd-up.sh &&
        bash tests/cluster/postgres-up.sh || exit 1
else
    echo "not root: using Slurm, sshd and PostgreSQL only if already running (tests/cluster/)" >&2
fi

summary=()
failed=0
stage() {  # stage NAME [allowed-status ...] -- command ...
    local name=$1 status allowed=(0)
    shift
    while [[ $1 != -- ]]; do allowed+=("$1"); shift; done
    shift
    echo "== $name"
    "$@"
    status=$?
    if [[ " ${allowed[*]} " == *" $status "* ]]; then
        summary+=("ok      $name")
    else
        summary+=("FAILED  $name (exit $status)")
        failed=1
    fi
}

stage "ruff" -- .venv/bin/ruff check hpcbridge tests benchmarks examples
stage "ruff format" -- .venv/bin/ruff format --check hpcbridge tests benchmarks examples
stage "mypy" -- .venv/bin/mypy
stage "pytest" -- .venv/bin/pytest -n 4 -m "not disruptive" --cov=hpcbridge --cov-report= \
    --cov-fail-under=0 "$@"
# Tests that take the Slurm node down, or all of it, would fail (or starve) everything
# running beside them: they run alone, after the rest. Exit 5 means none were selected
# (e.g. tests/run.sh -k pbs).
stage "pytest (disruptive, alone)" 5 -- .venv/bin/pytest -m disruptive --cov=hpcbridge \
    --cov-append --cov-report= --cov-fail-under=0 "$@"
# One coverage report, and its threshold (pyproject.toml), over both runs.
stage "coverage" -- .venv/bin/coverage report

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
