#!/usr/bin/env bash
# The example pipeline end to end on the embedded local backend: makes .venv (installing
# python3-venv with apt if it is missing and we are root), installs hpcbridge, runs
# examples/pipeline.py. Extra arguments go to the pipeline (e.g. --site test-slurm).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/cluster/venv.sh
source "$root/tests/cluster/venv.sh"
make_venv ""
exec "$root/.venv/bin/python" "$root/examples/pipeline.py" "$@"
