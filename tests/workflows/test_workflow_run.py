"""Workflows on real schedulers: the local Slurm and the PBS emulator.

Each scenario submits through the API, then asks ``hpcbridge workflow status|resume`` in a
separate process, as a user coming back later would, so nothing but the state file and the
scheduler carries over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcbridge import Cluster, SiteConfig
from hpcbridge.cli.options import EXIT_SCHEDULER
from hpcbridge.resources import data_dir
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.status import workflow_status
from hpcbridge.workflows.store import StateFileStore

pytestmark = pytest.mark.timeout(180)

HPCBRIDGE = str(Path(sys.executable).with_name("hpcbridge"))


@pytest.fixture(
    params=[
        pytest.param("test-slurm", marks=pytest.mark.slurm),
        pytest.param("test-pbs", marks=pytest.mark.pbs),
    ]
)
def site(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The site name; PBS gets this test's own emulator, on PATH for the CLI's process too."""
    if request.param == "test-pbs":
        request.getfixturevalue("pbs_emulator")
    monkeypatch.chdir(tmp_path)
    return str(request.param)


@pytest.fixture
def cluster(site: str) -> Iterator[Cluster]:
    with Cluster(SiteConfig.load(site)) as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> StateFileStore:
    return StateFileStore(tmp_path / "workflows")


def cli(store: StateFileStore, *args: str) -> dict[str, Any]:
    """Run ``hpcbridge workflow ARGS --json`` in its own process."""
    argv = [HPCBRIDGE, "workflow", *args, "--json", "--state-dir", str(store.directory)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def stages_of(store: StateFileStore, workflow_id: str) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in cli(store, "status", workflow_id)["stages"]}


def wait_until_settled(cluster: Cluster, store: StateFileStore, workflow_id: str) -> None:
    """Until no stage's latest job is pending or running (one status query per round)."""
    record = store.load(workflow_id)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = [s.state for s in workflow_status(cluster, record)]
        if not {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING"} & set(states):
            return
        time.sleep(0.5)
    pytest.fail(f"workflow {workflow_id} still running after 90 s: {states}")


def test_a_failed_stage_cancels_its_dependent_and_resume_reruns_only_those(
    site: str, cluster: Cluster, store: StateFileStore, workdir: Path
) -> None:
    where = {"workdir": str(workdir), "resources": {"walltime": "1:00"}}
    flow = Workflow.parse(
        {
            "name": "done",
            "stages": [
                {"name": "one", "command": "echo 1 > one.txt", **where},
                {"name": "two", "command": "test -f input.ok", "depends_on": "one", **where},
                {"name": "three", "command": "cat one.txt", "depends_on": "two", **where},
            ],
        }
    )
    record = submit_workflow(cluster, flow, store, site=site)
    first = {name: record.latest_job(name) for name in ("one", "two", "three")}
    wait_until_settled(cluster, store, record.workflow_id)

    stages = stages_of(store, record.workflow_id)
    assert [stages[n]["state"] for n in ("one", "two", "three")] == [
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    assert stages["three"]["note"].startswith("cancelled: dependency 'two' ended FAILED")

    (workdir / "input.ok").touch()
    resumed = cli(store, "resume", record.workflow_id)
    assert list(resumed["resubmitted"]) == ["two", "three"]
    assert resumed["resubmitted"]["two"] not in first.values()
    wait_until_settled(cluster, store, record.workflow_id)

    stages = stages_of(store, record.workflow_id)
    assert {n: s["state"] for n, s in stages.items()} == dict.fromkeys(stages, "COMPLETED")
    assert stages["one"]["job_id"] == first["one"]
    history = store.load(record.workflow_id).jobs
    assert [s.job_id for s in history["two"]] == [first["two"], resumed["resubmitted"]["two"]]
    assert (workdir / "one.txt").read_text() == "1\n"


@pytest.mark.parametrize("root_exit", [0, 3])
def test_a_diamond_with_afterany_and_afternotok(
    site: str, cluster: Cluster, store: StateFileStore, workdir: Path, root_exit: int
) -> None:
    where = {"workdir": str(workdir), "resources": {"walltime": "1:00"}}
    flow = Workflow.parse(
        {
            "name": "diamond",
            "stages": [
                {"name": "a", "command": f"exit {root_exit}", **where},
                {"name": "ok", "command": "true", "depends_on": "a", **where},
                {"name": "rescue", "command": "true", "depends_on": "afternotok:a", **where},
                {
                    "name": "join",
                    "command": "true",
                    "depends_on": ["afterany:ok", "afterany:rescue"],
                    **where,
                },
            ],
        }
    )
    record = submit_workflow(cluster, flow, store, site=site)
    wait_until_settled(cluster, store, record.workflow_id)
    stages = stages_of(store, record.workflow_id)
    states = {name: s["state"] for name, s in stages.items()}

    if root_exit == 0:
        assert states == {
            "a": "COMPLETED",
            "ok": "COMPLETED",
            "rescue": "CANCELLED",
            "join": "COMPLETED",
        }
        # The scheduler cancels it, or status does if it looks first ("; cancelled by hpcbridge").
        assert stages["rescue"]["note"].startswith(
            "cancelled: dependency 'a' completed (afternotok)"
        )
        resumed = cli(store, "resume", record.workflow_id)
        assert resumed["resubmitted"] == {}
        assert resumed["not_runnable"] == {"rescue": "dependency 'a' completed (afternotok)"}
    else:
        assert states == {
            "a": "FAILED",
            "ok": "CANCELLED",
            "rescue": "COMPLETED",
            "join": "COMPLETED",
        }
        assert stages["ok"]["note"].startswith("cancelled: dependency 'a' ended FAILED")
        assert stages["join"]["note"] == ""


@pytest.mark.slurm
def test_dependents_the_scheduler_leaves_pending_are_cancelled_by_status(
    tmp_path: Path, store: StateFileStore, workdir: Path
) -> None:
    """A site template without --kill-on-invalid-dep: Slurm keeps them PENDING forever."""
    templates = tmp_path / "templates" / "slurm"
    templates.mkdir(parents=True)
    stock = (data_dir("templates") / "slurm" / "job.sh.j2").read_text()
    assert "--kill-on-invalid-dep=yes" in stock
    (templates / "job.sh.j2").write_text(
        stock.replace("--kill-on-invalid-dep=yes", "--kill-on-invalid-dep=no")
    )
    site_file = tmp_path / "site.yaml"
    site_file.write_text(
        (data_dir("site_configs") / "test-slurm.yaml").read_text()
        + f"template_dir: {tmp_path / 'templates'}\n"
    )
    where = {"workdir": str(workdir), "resources": {"walltime": "1:00"}}
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        json.dumps(
            {
                "name": "left",
                "stages": [
                    {"name": "one", "command": "exit 1", **where},
                    {"name": "two", "command": "true", "depends_on": "one", **where},
                    {"name": "three", "command": "true", "depends_on": "two", **where},
                ],
            }
        )
    )
    submitted = cli(store, "submit", str(flow), "--site", str(site_file))
    jobs = submitted["jobs"]
    with Cluster.from_site(site_file) as cluster:
        cluster.wait(jobs["one"], timeout=60)
        time.sleep(2)  # past slurmctld's next dependency check
        left = cluster.status(jobs["two"])[jobs["two"]]
        assert (left.state.value, left.reason) == ("PENDING", "DependencyNeverSatisfied")

        stages = stages_of(store, submitted["workflow_id"])
        for name in ("two", "three"):
            assert stages[name]["state"] == "CANCELLED"
            assert stages[name]["note"] == (
                "cancelled: dependency 'one' ended FAILED; cancelled by hpcbridge"
            )
        ended = cluster.wait([jobs["two"], jobs["three"]], timeout=30)
    assert {info.state.value for info in ended.values()} == {"CANCELLED"}


@pytest.mark.slurm
def test_a_refused_stage_leaves_a_resumable_workflow(
    tmp_path: Path, store: StateFileStore, workdir: Path
) -> None:
    """sbatch refuses stage two (more memory than the node has); resume --file fixes it."""
    where = {"workdir": str(workdir), "resources": {"walltime": "1:00"}}
    stages: list[dict[str, Any]] = [
        {"name": "one", "command": "true", **where},
        {"name": "two", "command": "true", "depends_on": "one", **where},
        {"name": "three", "command": "true", "depends_on": "afterany:two", **where},
    ]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(json.dumps({"name": "refused", "stages": stages}))
    stages[1] = {**stages[1], "resources": {"walltime": "1:00", "memory": "64G"}}
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps({"name": "refused", "stages": stages}))

    argv = [HPCBRIDGE, "workflow", "submit", str(broken), "--site", "test-slurm"]
    result = subprocess.run(
        [*argv, "--state-dir", str(store.directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == EXIT_SCHEDULER, result.stderr
    assert "Memory specification can not be satisfied" in result.stderr
    assert "1 of 3 stages were submitted" in result.stderr
    (record_file,) = store.directory.glob("refused-*.json")
    workflow_id = record_file.stem
    assert set(store.load(workflow_id).jobs) == {"one"}

    resumed = cli(store, "resume", workflow_id, "--file", str(fixed))
    assert list(resumed["resubmitted"]) == ["two", "three"]
    with Cluster.from_site("test-slurm") as cluster:
        wait_until_settled(cluster, store, workflow_id)
    states = {name: s["state"] for name, s in stages_of(store, workflow_id).items()}
    assert states == dict.fromkeys(("one", "two", "three"), "COMPLETED")
    assert store.load(workflow_id).workflow.stage("two").resources.memory is None


def test_watch_retries_a_stage_by_its_policy_after_the_backoff_and_leaves_other_failures(
    site: str, cluster: Cluster, store: StateFileStore, workdir: Path
) -> None:
    where = {"workdir": str(workdir), "resources": {"walltime": "1:00"}}
    # Fails its first run (exit 1, FAILED), which its policy retries; passes the second.
    flaky = 'n=$(cat tries 2>/dev/null || echo 0); echo $((n + 1)) > tries; test "$n" -ge 1'
    flow = Workflow.parse(
        {
            "name": "retries",
            "stages": [
                {
                    "name": "flaky",
                    "command": flaky,
                    "retry": {"on": ["FAILED"], "backoff": 5},
                    **where,
                },
                {"name": "after", "command": "cp tries after.txt", "depends_on": "flaky", **where},
                {"name": "broken", "command": "exit 2", "retry": {"on": ["NODE_FAIL"]}, **where},
            ],
        }
    )
    record = submit_workflow(cluster, flow, store, site=site)
    first = record.latest_job("flaky")
    argv = [
        HPCBRIDGE,
        "workflow",
        "watch",
        record.workflow_id,
        "--interval",
        "1",
        "--timeout",
        "150",
        "--json",
        "--state-dir",
        str(store.directory),
    ]
    watched = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=170)
    assert watched.returncode == 1, watched.stderr  # "broken" failed, and stays failed
    answer = json.loads(watched.stdout)
    assert [(r["stage"], r["why"]) for r in answer["retried"]] == [
        ("flaky", "FAILED: attempt 2 of 4 after 5 s"),
        ("after", "after flaky"),
    ]
    states = {s["stage"]: s["state"] for s in answer["stages"]}
    assert states == {"flaky": "COMPLETED", "after": "COMPLETED", "broken": "FAILED"}
    assert (workdir / "after.txt").read_text() == "2\n"

    runs = store.load(record.workflow_id).jobs["flaky"]
    assert (len(runs), runs[0].job_id) == (2, first)
    assert runs[1].retry == "FAILED: attempt 2 of 4 after 5 s"
    infos = cluster.status([first, runs[1].job_id])
    ended, started = infos[first].end_time, infos[runs[1].job_id].start_time
    assert ended is not None
    assert started is not None
    # The scheduler held the retry back (its begin time), not the watcher: >= 5 s later.
    assert (started - ended).total_seconds() >= 5 - 1  # whole seconds on both sides
    assert len(store.load(record.workflow_id).jobs["broken"]) == 1
