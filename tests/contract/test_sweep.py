"""Cluster.submit_many on every backend: a sweep packed into arrays, one id per job.

Runs on the local backend, the real Slurm (directly and over SSH, where the parameters file is
written through the transport) and the PBS emulator, as the rest of the contract suite does.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hpcbridge import JobState

from .conftest import Harness

pytestmark = pytest.mark.timeout(240)

# What an item's id looks like: an array task of the scheduler's own naming.
TASK_ID = {
    "local": r"\d+_\d+",
    "slurm": r"\d+_\d+",
    "slurm-ssh": r"\d+_\d+",
    "pbs-json": r"\d+\[\d+\]\.\S+",
    "pbs-operator": r"\d+\[\d+\]\.\S+",
}
HOSTILE = 'it\'s "$(touch {canary})" `touch {canary}`\n; touch {canary} \\'


def test_a_sweep_runs_as_split_arrays_with_one_id_state_and_exit_code_per_job(
    harness: Harness, workdir: Path
) -> None:
    canary = workdir / "canary"
    items = 7
    specs = [
        {
            "name": "sweep",
            "command": 'printf %s "$VALUE" > "out-$ITEM.txt"; exit "$CODE"',
            "workdir": str(workdir),
            "resources": {"walltime": "5:00"},
            "env": {
                "VALUE": f"{item}: {HOSTILE.format(canary=canary)}",
                "ITEM": str(item),
                "CODE": "3" if item == 4 else "0",
            },
        }
        for item in range(items)
    ]
    ids = harness.cluster.submit_many(specs, max_array_size=3, limit=2)
    assert len(set(ids)) == items
    pattern = TASK_ID.get(harness.kind)
    if pattern:
        assert all(re.fullmatch(pattern, job_id) for job_id in ids), ids
    infos = harness.cluster.wait(ids, timeout=180)
    assert [infos[job_id].state for job_id in ids] == [
        JobState.FAILED if item == 4 else JobState.COMPLETED for item in range(items)
    ]
    assert [infos[job_id].exit_code for job_id in ids] == [3 if i == 4 else 0 for i in range(7)]
    for item in range(items):
        assert (workdir / f"out-{item}.txt").read_text() == specs[item]["env"]["VALUE"]  # type: ignore[index]
    assert not canary.exists()
    # Seven jobs by at most three per array: three arrays of 3, 2 and 2 tasks.
    arrays = {infos[job_id].array_job_id for job_id in ids}
    assert len(arrays) == 3
    assert harness.cluster.status(ids).keys() >= set(ids)


def test_jobs_with_their_own_commands_share_an_array(harness: Harness, workdir: Path) -> None:
    words = ["alpha", "beta gamma", "'delta' $(touch canary)"]
    specs = [
        {
            "name": "own-commands",
            "command": f"printf %s {shlex.quote(word)} > out-{index}.txt",
            "workdir": str(workdir),
            "resources": {"walltime": "5:00"},
        }
        for index, word in enumerate(words)
    ]
    ids = harness.cluster.submit_many(specs)
    infos = harness.cluster.wait(ids, timeout=120)
    assert {info.state for info in infos.values()} == {JobState.COMPLETED}
    assert len({infos[job_id].array_job_id for job_id in ids}) == 1
    assert [(workdir / f"out-{index}.txt").read_text() for index in range(3)] == words
    assert not (workdir / "canary").exists()
