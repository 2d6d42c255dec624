#!/usr/bin/env bash
# The whole test suite, as CI runs it: a virtualenv with the dev extras, the real Slurm test
# cluster (installed with apt and started if needed: run as root), lint, types, then pytest
# with coverage. Extra arguments go to pytest (e.g. tests/run.sh -k contract).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# shellcheck source=cluster/venv.sh
source tests/cluster/venv.sh
make_venv dev

if [[ $(id -u) -eq 0 ]]; then
    bash tests/cluster/slurm-up.sh
else
    echo "not root: using Slurm only if it is already running (tests/cluster/slurm-up.sh)" >&2
fi

echo "== ruff" && .venv/bin/ruff check hpcbridge tests benchmarks examples
echo "== ruff format" && .venv/bin/ruff format --check hpcbridge tests benchmarks examples
echo "== mypy" && .venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -n 4 --cov=hpcbridge --cov-report=term "$@"
