"""After a node failure, workflow resume asks Slurm to avoid the node (sbatch --exclude) where
another node could run the stage, and goes on without the exclusion where none could."""

from __future__ import annotations

from pathlib import Path

import pytest
from slurm_queue import fail_node_under

from hpcbridge import Cluster, JobState
from hpcbridge.errors import SpecError
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import resume_workflow, submit_workflow
from hpcbridge.workflows.status import workflow_status
from hpcbridge.workflows.store import StateFileStore


def test_exclude_nodes_is_rendered_for_slurm(tmp_path: Path) -> None:
    with Cluster.from_site("test-slurm") as cluster:
        script = cluster.render({"name": "x", "command": "true", "exclude_nodes": "gpu[01-03],vm"})
    # Quoted like every value (brackets are shell globs); sbatch reads quotes in directives.
    assert "#SBATCH --exclude='gpu[01-03],vm'\n" in script


@pytest.mark.parametrize("nodes", ["a b", "$(reboot)", "n;1"])
def test_exclude_nodes_must_be_a_hostlist(nodes: str) -> None:
    with pytest.raises(SpecError, match=r"exclude_nodes: .* is not a node name or hostlist"):
        JobSpec.parse({"name": "x", "command": "true", "exclude_nodes": nodes})


def test_schedulers_that_cannot_exclude_nodes_refuse(local_cluster: Cluster) -> None:
    with pytest.raises(SpecError, match="exclude_nodes: 'vm' cannot be honoured by the local"):
        local_cluster.submit({"name": "x", "command": "true", "exclude_nodes": "vm"})
    with Cluster.from_site("test-pbs") as pbs, pytest.raises(SpecError, match="qsub"):
        pbs.render({"name": "x", "command": "true", "exclude_nodes": "vm"})


@pytest.mark.slurm
@pytest.mark.disruptive
@pytest.mark.timeout(240)
def test_resume_after_a_node_failure_tries_to_avoid_the_node(
    slurm_cluster: Cluster, workdir: Path, tmp_path: Path
) -> None:
    # Not requeueable, so the node failure ends the stage: resume must resubmit it. The second
    # run finds the first run's mark and ends at once.
    command = "if [ -f ran ]; then echo second; exit 0; fi; touch ran; sleep 120"
    stage = {"name": "solo", "command": command, "requeue": False, "workdir": str(workdir)}
    store = StateFileStore(tmp_path / "workflows")
    record = submit_workflow(
        slurm_cluster, Workflow.parse({"name": "nf", "stages": [stage]}), store
    )
    first = record.latest_job("solo")
    assert first is not None
    fail_node_under(slurm_cluster, first, reason="hpcbridge-exclude-test")

    record, rerun, _ = resume_workflow(slurm_cluster, store, record.workflow_id)
    assert rerun == ["solo"]
    submission = record.jobs["solo"][-1]
    # The only node failed: Slurm refuses --exclude=vm, and the stage goes on without it.
    assert submission.excluded == "vm"
    assert submission.exclusion_refused
    assert StateFileStore(tmp_path / "workflows").load(record.workflow_id).jobs["solo"][-1] == (
        submission
    )
    second = submission.job_id
    assert second != first
    slurm_cluster.wait(second, timeout=120)
    states = [s.state for s in workflow_status(slurm_cluster, record)]
    assert states == [JobState.COMPLETED.value]
