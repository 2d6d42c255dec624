"""PBS-specific behaviour of the backend, on the PBS emulator (faults included)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import (
    Cluster,
    CommandResult,
    CommandTimeout,
    JobNotFound,
    JobState,
    LocalTransport,
    RecordingTransport,
    SchedulerUnavailable,
    SiteConfig,
    SpecError,
    SubmitError,
)
from hpcbridge.backends.pbs import PbsBackend

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.chdir(tmp_path)
    site = SiteConfig.load("test-pbs")
    return Cluster(site.model_copy(update={"partitions": {}}))  # let PBS itself judge


def pbs_backend(cluster: Cluster) -> PbsBackend:
    assert isinstance(cluster.backend, PbsBackend)
    return cluster.backend


def spec(name: str, command: str = "true", **fields: object) -> dict[str, object]:
    return {"name": name, "command": command, **fields}


def jobs_named(emulator: PbsEmulator, name: str) -> list[str]:
    listed = emulator.run("qstat", "-x", "-f", "-F", "json").stdout
    jobs = json.loads(listed).get("Jobs", {})
    return [job_id for job_id, attrs in jobs.items() if attrs["Job_Name"] == name]


def test_refusals_name_the_field(cluster: Cluster) -> None:
    with pytest.raises(SubmitError, match=r"\(partition\).*Unknown queue"):
        cluster.submit(spec("q", partition="nosuchqueue"))


def test_lost_qsub_answer_does_not_duplicate(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lost = {"done": False}

    def lose_first_answer(argv: list[str], result: CommandResult) -> CommandResult:
        if argv[0] == "qsub" and not lost["done"]:
            lost["done"] = True
            return CommandResult(result.argv, 2, "", "Connection timed out\nqsub: cannot connect")
        return result

    transport = RecordingTransport(LocalTransport(), lose_first_answer)
    with Cluster(SiteConfig.load("test-pbs"), transport=transport) as cluster:
        pbs_backend(cluster).commands.backoff = 0.01
        job_id = cluster.submit(spec("lost-answer"))
    assert transport.count("qsub") == 1
    assert jobs_named(pbs_emulator, "lost-answer") == [job_id]


def test_server_down_then_back_is_retried_without_duplicates(
    cluster: Cluster, pbs_emulator: PbsEmulator
) -> None:
    pbs_backend(cluster).commands.backoff = 0.3
    pbs_emulator.fault("server_down")
    threading.Timer(1.0, pbs_emulator.fault, args=("server_up",)).start()
    job_id = cluster.submit(spec("after-outage"))
    assert jobs_named(pbs_emulator, "after-outage") == [job_id]
    assert cluster.wait(job_id, timeout=30)[job_id].state is JobState.COMPLETED


def test_server_that_stays_down_is_reported_as_unavailable(
    cluster: Cluster, pbs_emulator: PbsEmulator
) -> None:
    job_id = cluster.submit(spec("before-outage"))
    pbs_backend(cluster).commands.backoff = 0.01
    pbs_emulator.fault("server_down")
    with pytest.raises(SchedulerUnavailable, match="cannot connect to server") as caught:
        cluster.status(job_id)
    assert caught.value.transient


def test_hanging_server_hits_the_command_timeout(pbs_emulator: PbsEmulator) -> None:
    site = SiteConfig.load("test-pbs")
    site = site.model_copy(
        update={"transport": site.transport.model_copy(update={"command_timeout": 0.5})}
    )
    with Cluster(site) as cluster:
        pbs_backend(cluster).commands.backoff = 0.01
        pbs_emulator.fault("hang", seconds=5)
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            cluster.status("0")
        assert caught.value.transient
        assert time.monotonic() - started < 5
        pbs_emulator.fault("clear")


def test_node_failure_requeues_rerunnable_jobs(cluster: Cluster, pbs_emulator: PbsEmulator) -> None:
    gate = Path("gate").resolve()
    rerunnable = cluster.submit(spec("survivor", f"test -e {gate} || sleep 60", requeue=True))
    doomed = cluster.submit(spec("doomed", "sleep 60", requeue=False))
    for job_id in (rerunnable, doomed):
        deadline = time.monotonic() + 20
        while cluster.status(job_id)[job_id].state is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    gate.touch()
    pbs_emulator.fault("node_down")
    time.sleep(1.5)
    pbs_emulator.fault("node_up")
    infos = cluster.wait([rerunnable, doomed], timeout=60)
    assert infos[rerunnable].state is JobState.COMPLETED
    assert infos[rerunnable].restarts == 1
    assert infos[doomed].state is JobState.NODE_FAIL


def test_forced_rerun_counts_a_restart(cluster: Cluster, pbs_emulator: PbsEmulator) -> None:
    job_id = cluster.submit(spec("rerun", "test -e ran || { touch ran; sleep 60; }"))
    deadline = time.monotonic() + 20
    while cluster.status(job_id)[job_id].state is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pbs_emulator.fault("rerun", job_ids=[job_id])
    info = cluster.wait(job_id, timeout=60)[job_id]
    assert info.state is JobState.COMPLETED
    assert info.restarts == 1


def test_priority_levels_are_qsub_and_qalter_p(cluster: Cluster, pbs_emulator: PbsEmulator) -> None:
    later = {"begin": "2099-01-01T00:00:00"}
    plain, physics = (
        cluster.submit(spec("plain", **later)),
        cluster.submit(spec("physics", account="physics", **later)),
    )
    asked = cluster.submit(spec("asked", priority="low", **later))
    priorities = {job: pbs_emulator.job(job)["Priority"] for job in (plain, physics, asked)}  # type: ignore[index]
    assert priorities == {plain: 0, physics: 500, asked: -500}  # default, account's, its own

    cluster.set_priority([plain, asked], "high")
    assert {pbs_emulator.job(job)["Priority"] for job in (plain, asked)} == {500}  # type: ignore[index]
    assert cluster.status(plain)[plain].reason == "BeginTime"
    with pytest.raises(
        SpecError, match=r"priority: 'urgent' is not a level of site test-pbs \(low, normal, high\)"
    ):
        cluster.set_priority([plain], "urgent")
    cluster.cancel([plain, physics, asked])


@pytest.mark.pbs_config(job_history_enable=False)
def test_without_job_history_finished_jobs_are_gone(
    pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    site = SiteConfig.load("test-pbs")
    site = site.model_copy(update={"pbs": site.pbs.model_copy(update={"job_history": False})})
    with Cluster(site) as cluster:
        job_id = cluster.submit(spec("brief", stdout=str(tmp_path / "brief.out")))
        deadline = time.monotonic() + 20
        while job_id in cluster.backend.status([job_id]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(JobNotFound, match=r"job history is off") as caught:
            cluster.status(job_id)
        assert job_id in str(caught.value)


def test_status_of_several_jobs_is_complete_in_one_qstat(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenPBS prints only the first of several ids with -F json; the site default is JSON,
    yet the status of every job (finished, running, held, and one the server forgot) comes
    back from one qstat call."""
    monkeypatch.chdir(tmp_path)
    site = SiteConfig.load("test-pbs")
    assert site.pbs.json_output
    transport = RecordingTransport(LocalTransport())
    with Cluster(site, transport=transport) as cluster:
        done = cluster.submit(spec("done", "true"))
        failed = cluster.submit(spec("failed", "exit 3"))
        cluster.wait([done, failed], timeout=60)
        running = cluster.submit(spec("running", "sleep 30"))
        # Held by its dependency, then by its user: Hold_Types "su" on OpenPBS.
        held = cluster.submit(spec("held", "true", depends_on=[f"afterok:{running}"]))
        cluster.hold([held])
        wait_for_state(cluster, running, JobState.RUNNING)
        before = transport.count("qstat")
        infos = cluster.status([done, failed, running, held])
        assert transport.count("qstat") == before + 1
        cluster.cancel([running, held])
    assert infos[done].state is JobState.COMPLETED
    assert (infos[failed].state, infos[failed].exit_code) == (JobState.FAILED, 3)
    assert infos[running].state is JobState.RUNNING
    assert (infos[held].state, infos[held].held) == (JobState.PENDING, True)


def wait_for_state(cluster: Cluster, job_id: str, state: JobState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while cluster.status([job_id])[job_id].state is not state:
        assert time.monotonic() < deadline, f"{job_id} never became {state}"
        time.sleep(0.1)
