"""Cluster.allocation's steps on the real Slurm, seen from inside a batch job: recorded in the
ledger under the job with their exit codes, and packed onto the allocation's GPUs.

Each test runs tests/executor/allocation_driver.py as the batch script's Python (so Slurm
itself sets the allocation's variables: SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES ...), waits for
the job with ``sbatch --wait``, then reads what the calls returned and what sacct recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from allocation_calls import most_at_once
from click.testing import CliRunner
from test_allocation import held_allocation

from hpcbridge import Cluster, LocalTransport
from hpcbridge.cli.main import main
from hpcbridge.errors import SpecError
from hpcbridge.ledger.sources.slurm import SacctSource
from hpcbridge.ledger.steps import RecordedStep, steps_of
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.sync import sync

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(420)]
DRIVER = Path(__file__).with_name("allocation_driver.py")
CLUSTER = "test-steps"
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def run_driver(
    workdir: Path, *, tasks: int, gpus: int, calls: int, gpus_per_call: int, failing: int
) -> tuple[str, dict[str, Any]]:
    """The batch job's id and the driver's report, once the job has ended."""
    out = workdir / "report.json"
    command = f"{sys.executable} {DRIVER} test-slurm {out} {calls} {gpus_per_call} {failing}"
    argv = ["sbatch", "--parsable", "--wait", f"--ntasks={tasks}", "--time=10"]
    argv += [f"--gres=gpu:{gpus}"] if gpus else []
    argv += [f"--output={workdir / 'job.out'}", f"--chdir={workdir}", f"--wrap={command}"]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=360, check=False)
    job_id = ran.stdout.strip().split(";")[0]
    log = (workdir / "job.out").read_text() if (workdir / "job.out").exists() else ""
    assert ran.returncode == 0, f"job {job_id}: {ran.stderr}\n{log}"
    return job_id, json.loads(out.read_text())


def synced_steps(ledger: Ledger, job_id: str, count: int) -> list[RecordedStep]:
    """Sync the last minutes of sacct until the job's ``count`` steps have all ended there
    (slurmdbd may hold a step's end a moment after the job has left squeue)."""
    source = SacctSource(LocalTransport(120.0), first_sync=timedelta(minutes=20))
    deadline = time.monotonic() + 120
    while True:
        sync(ledger, CLUSTER, "slurm", [source])
        steps = steps_of(ledger, job_id, cluster=CLUSTER)
        if len(steps) == count and all(s.step.end is not None for s in steps):
            return steps
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id}'s {count} steps never all ended in sacct: {steps}")
        time.sleep(1)


def test_steps_are_recorded_under_the_job_with_their_exit_codes(
    workdir: Path, tmp_path: Path
) -> None:
    job_id, report = run_driver(workdir, tasks=4, gpus=0, calls=8, gpus_per_call=0, failing=5)
    raised = report["results"][5]["raised"]
    assert raised.startswith("call 5 in step ")
    failed_step = raised.rsplit(" ", 1)[1]
    returned = {r["step"] for r in report["results"] if "step" in r}
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        steps = synced_steps(ledger, job_id, 8)
        assert {s.step.step_id for s in steps} == returned | {failed_step}
        assert [s.step.step_id for s in steps] == sorted((s.step.step_id for s in steps), key=int)
        by_id = {s.step.step_id: s.step for s in steps}
        # The worker exits 1 when the call raised, so Slurm records the step as FAILED 1:0.
        assert (by_id[failed_step].state.value, by_id[failed_step].exit_code) == ("FAILED", 1)
        for step_id in returned:
            step = by_id[step_id]
            assert (step.state.value, step.exit_code, step.exit_signal) == ("COMPLETED", 0, 0)
            assert (step.alloc_cpus, step.alloc_gpus) == (1, 0)
            assert step.start is not None
            assert step.node_list
            assert (step.elapsed_s or 0) >= 1
        assert {(s.attempt, s.array_index) for s in steps} == {(1, -1)}
        sync(ledger, CLUSTER, "slurm", [SacctSource(LocalTransport(120.0))])  # again: no copies
        assert steps_of(ledger, job_id, cluster=CLUSTER) == steps
    shown = CliRunner().invoke(main, ["ledger", "steps", job_id, "--ledger", url, "--json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [(r["step_id"], r["state"], r["exit_code"]) for r in rows] == [
        (s.step.step_id, s.step.state.value, s.step.exit_code) for s in steps
    ]
    assert (rows[0]["cluster"], rows[0]["attempt"]) == (CLUSTER, 1)


def test_gpus_per_call_packs_steps_onto_the_allocations_gpus(workdir: Path, tmp_path: Path) -> None:
    job_id, report = run_driver(workdir, tasks=4, gpus=2, calls=6, gpus_per_call=1, failing=-1)
    assert report["env"]["SLURM_JOB_GPUS"] == "0,1"
    refused = f"gpus_per_call=3 is more than allocation {job_id} has: 2 GPUs (TRES="
    assert report["refused"].startswith(refused)
    assert "gres/gpu=2" in report["refused"]
    assert report["workers"] == 2  # 4 tasks, but 2 GPUs of 1 per call: the rest wait here
    results = report["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert {r["gpus"] for r in results} <= {"0", "1"}  # each step sees its one GPU only
    assert most_at_once(results) == 2
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        steps = synced_steps(ledger, job_id, 6)
    for recorded in steps:
        assert recorded.step.alloc_gpus == 1, recorded.step.tres
        assert "gres/gpu=1" in (recorded.step.tres or ""), recorded.step.tres


def gpus_seen(index: int) -> tuple[str, str | None]:
    """The step a call ran in and the GPUs it saw."""
    return os.environ["SLURM_STEP_ID"], os.environ.get("CUDA_VISIBLE_DEVICES")


def test_in_an_salloc_the_gpus_are_asked_of_the_controller(
    slurm_cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An salloc shell has no GPU variables on 22.05: the count comes from scontrol alone.
    monkeypatch.delenv("SLURM_JOB_GPUS", raising=False)
    with held_allocation(monkeypatch, 2, "--gres=gpu:1") as job_id:
        with pytest.raises(SpecError, match=f"gpus_per_call=2 is more than allocation {job_id} "):
            slurm_cluster.allocation(root=tmp_path, gpus_per_call=2)
        with pytest.raises(SpecError, match="gpus_per_call must be 0 or more, not -1"):
            slurm_cluster.allocation(root=tmp_path, gpus_per_call=-1)
        with slurm_cluster.allocation(root=tmp_path, gpus_per_call=1) as pool:
            assert pool._max_workers == 1  # 2 tasks, 1 GPU
            seen = list(pool.map(gpus_seen, range(2)))
    assert len({step for step, _ in seen}) == 2
    assert {gpus for _, gpus in seen} <= {"0", "1", "2", "3"}  # one GPU each, whichever
