"""Scenario priority from results on the real test Slurm: three scenarios queue behind a job
holding all 16 CPUs; ``hpcbridge priority rerank`` reads their metric files and the most
promising one, submitted last, runs first once the node frees; the ledger holds the moves."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hpcbridge import Cluster, JobState
from hpcbridge.cli.main import main
from hpcbridge.ledger.schema import PriorityChange
from hpcbridge.ledger.store import Ledger
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import LedgerStore

# The blocker takes the whole node, and the scenarios queue with priorities above the other
# tests' jobs: beside them it would starve them (PENDING, Priority). It runs alone.
pytestmark = [pytest.mark.slurm, pytest.mark.disruptive, pytest.mark.timeout(480)]

RERANK = ["priority", "rerank"]
LOSSES = {"weak": 0.9, "middling": 0.5, "promising": 0.1}  # submitted in this order


def squeue_levels(job_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Slurm's own view of each job's QOS and nice (squeue -o %q %y)."""
    listed = subprocess.run(
        ["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--format=%i %q %y"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = (line.split() for line in listed if line.strip())
    return {job: (qos, int(nice)) for job, qos, nice in rows}


def wait_until_running(cluster: Cluster, job_id: str, timeout: float = 300) -> None:
    # Long: the node may first finish other tests' whole-node jobs (the other ledger's run).
    deadline = time.monotonic() + timeout
    while cluster.status([job_id])[job_id].state is not JobState.RUNNING:
        assert time.monotonic() < deadline, f"job {job_id} did not start within {timeout} s"
        time.sleep(0.2)


def test_a_rerank_from_metric_files_runs_the_promising_scenario_first(
    slurm_cluster: Cluster, workdir: Path, ledger_url: str
) -> None:
    campaign = f"sweep-{uuid.uuid4().hex[:8]}"
    gate = workdir / "gate"
    blocker = slurm_cluster.submit(
        {
            "name": "blocker",
            "command": f"while [ ! -e {gate} ]; do sleep 0.2; done",
            "workdir": str(workdir),
            "stdout": "blocker-%j.out",
            "resources": {"cpus_per_task": 16, "walltime": "5:00"},
        }
    )
    jobs = [blocker]
    try:
        wait_until_running(slurm_cluster, blocker)
        with Ledger.open(ledger_url) as ledger:
            store = LedgerStore(ledger)
            for scenario, loss in LOSSES.items():
                metrics = workdir / f"{scenario}.jsonl"
                lines = [{"step": 1, "loss": loss + 1}, {"step": 2, "loss": loss}]
                metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
                metrics.chmod(0o666)
                workflow = Workflow.parse(
                    {
                        "name": scenario,
                        "campaign": {"name": campaign, "scenario": scenario, "metrics": metrics},
                        "stages": [
                            {
                                "name": "run",
                                "command": 'date +%s.%N > "$HPCBRIDGE_SCENARIO.start"; '
                                'echo \'{"ran": 1}\' >> "$HPCBRIDGE_METRICS_FILE"',
                                "workdir": str(workdir),
                                "stdout": f"{scenario}-%j.out",
                                "resources": {"cpus_per_task": 16, "walltime": "5:00"},
                            }
                        ],
                    }
                )
                record = submit_workflow(slurm_cluster, workflow, store, site="test-slurm")
                jobs.append(record.latest_job("run") or "")
        ids = dict(zip(LOSSES, jobs[1:], strict=True))

        result = CliRunner().invoke(
            main,
            [*RERANK, campaign, "--metric", "loss", "--minimize", "--ledger", ledger_url, "--json"],
        )
        assert result.exit_code == 0, result.output
        answer = json.loads(result.output)
        assert [(s["scenario"], s["rank"], s["level"]) for s in answer["scenarios"]] == [
            ("promising", 1, "high"),
            ("middling", 2, "normal"),
            ("weak", 3, "low"),
        ]
        assert answer["scenarios"][0]["reason"] == "rank 1 of 3 by loss = 0.1"
        assert squeue_levels(list(ids.values())) == {
            ids["promising"]: ("high", 0),
            ids["middling"]: ("normal", 0),
            ids["weak"]: ("normal", 1000),
        }
        with Ledger.open(ledger_url) as ledger, ledger.engine.connect() as connection:
            query = select(
                PriorityChange.job_id,
                PriorityChange.scenario,
                PriorityChange.old_level,
                PriorityChange.new_level,
                PriorityChange.campaign,
                PriorityChange.cluster,
            )
            recorded = {tuple(row) for row in connection.execute(query)}
        assert recorded == {
            (ids["promising"], "promising", None, "high", campaign, "hpcbridge"),
            (ids["middling"], "middling", None, "normal", campaign, "hpcbridge"),
            (ids["weak"], "weak", None, "low", campaign, "hpcbridge"),
        }

        # Nothing changed since: a second rerank moves nothing and records nothing.
        again = CliRunner().invoke(
            main,
            [*RERANK, campaign, "--metric", "loss", "--minimize", "--ledger", ledger_url, "--json"],
        )
        assert again.exit_code == 0, again.output
        assert json.loads(again.output)["changes"] == []
        assert sorted(json.loads(again.output)["unchanged"]) == sorted(ids.values())

        gate.touch()
        infos = slurm_cluster.wait(jobs, timeout=180)
        assert {info.state for info in infos.values()} == {JobState.COMPLETED}
        started = {name: float((workdir / f"{name}.start").read_text()) for name in LOSSES}
        assert started["promising"] < started["middling"] < started["weak"]
        # Each stage found its scenario's metric file in its environment.
        for scenario in LOSSES:
            written = (workdir / f"{scenario}.jsonl").read_text().splitlines()
            assert json.loads(written[-1]) == {"ran": 1}
    except BaseException:
        gate.touch()
        slurm_cluster.cancel(jobs)
        raise
