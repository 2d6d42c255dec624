"""The local backend on its own: real runner processes, short jobs, a private state directory.

The contract suite (tests/contract) checks what the local backend shares with Slurm; these tests
cover what only the local backend can be asked about (its records, its processes, its races)
and the edge cases the contract leaves out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcbridge import Cluster, JobInfo, JobNotFound, JobSpec, JobState, SchedulerError, SubmitError
from hpcbridge.backends.local import store as st
from hpcbridge.backends.local.backend import LocalBackend
from hpcbridge.backends.local.rules import expand_pattern
from hpcbridge.site import LocalOptions, SiteConfig
from hpcbridge.transports import FakeTransport

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A local cluster whose jobs run in tmp_path/work unless told otherwise."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with Cluster.local(state_dir=tmp_path / "state") as local:
        yield local
        _cancel_leftovers(local)


def _cancel_leftovers(cluster: Cluster) -> None:
    """Leave no runner behind: cancel whatever a failing test left running."""
    backend = cluster.backend
    assert isinstance(backend, LocalBackend)
    if not backend.store.jobs.is_dir():
        return
    ids = [entry.name for entry in os.scandir(backend.store.jobs) if entry.name.isdigit()]
    unfinished = [i for i, info in backend.status(ids).items() if not info.state.is_terminal]
    if unfinished:
        backend.cancel(unfinished)


def store_of(cluster: Cluster) -> st.Store:
    backend = cluster.backend
    assert isinstance(backend, LocalBackend)
    return backend.store


def record(cluster: Cluster, job_id: str) -> st.Record:
    members = store_of(cluster).members(job_id)
    assert len(members) == 1
    return members[0]


def wait_for(
    cluster: Cluster, job_id: str, predicate: Callable[[JobInfo], bool], timeout: float = 20
) -> JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        info = cluster.status(job_id)[job_id]
        if predicate(info):
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not get there; last seen {info}")
        time.sleep(0.05)


def finish(cluster: Cluster, job_ids: str | list[str], timeout: float = 20) -> dict[str, JobInfo]:
    """Like Cluster.wait, but polling every 50 ms, so short tests stay short."""
    wanted = [job_ids] if isinstance(job_ids, str) else job_ids
    deadline = time.monotonic() + timeout
    while True:
        infos = cluster.status(wanted)
        if all(infos[job_id].state.is_terminal for job_id in wanted):
            return {job_id: infos[job_id] for job_id in wanted}
        if time.monotonic() > deadline:
            pytest.fail(f"jobs {wanted} did not finish; last seen {infos}")
        time.sleep(0.05)


def running(info: JobInfo) -> bool:
    return info.state is JobState.RUNNING


def group_gone(pgid: int, timeout: float = 6) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def job(name: str, command: str, **fields: object) -> dict[str, object]:
    return {"name": name, "command": command, **fields}


# -- arrays ------------------------------------------------------------------------------------


def test_array_never_runs_more_tasks_than_its_limit(cluster: Cluster) -> None:
    array = cluster.submit(job("lim", "sleep 0.4", array="1-6%2"))
    wait_for(cluster, f"{array}_6", lambda info: info.reason == "JobArrayTaskLimit")
    early = cluster.status(array)
    waiting = [i for i in early.values() if i.array_task_id and i.state is JobState.PENDING]
    assert waiting
    assert {i.reason for i in waiting} == {"JobArrayTaskLimit"}

    finish(cluster, array)
    tasks = [i for i in cluster.status(array).values() if i.array_task_id is not None]
    assert sorted(i.job_id for i in tasks) == [f"{array}_{n}" for n in range(1, 7)]
    events = sorted(
        [(i.start_time, 1) for i in tasks] + [(i.end_time, -1) for i in tasks],
        key=lambda event: (event[0], event[1]),
    )
    concurrent = peak = 0
    for _, step in events:
        concurrent += step
        peak = max(peak, concurrent)
    assert peak == 2


def test_array_status_lists_the_aggregate_and_every_task(cluster: Cluster) -> None:
    array = cluster.submit(job("agg", 'exit "$HPCBRIDGE_ARRAY_INDEX"', array="0,2"))
    finish(cluster, array)
    infos = cluster.status(array)
    assert set(infos) == {array, f"{array}_0", f"{array}_2"}
    assert infos[array].state is JobState.FAILED  # the worst ending wins
    assert infos[array].exit_code == 2
    assert infos[f"{array}_0"].state is JobState.COMPLETED
    assert infos[f"{array}_2"].array_job_id == array
    assert cluster.status(f"{array}_2")[f"{array}_2"].exit_code == 2


# -- dependencies ------------------------------------------------------------------------------


def test_after_starts_once_the_parent_has_started(cluster: Cluster) -> None:
    # The parent waits for its begin time, so the child is seen waiting whatever the load
    # (checked right after submitting, a loaded machine could run both first).
    begin = datetime.now(UTC) + timedelta(seconds=5)
    parent = cluster.submit(job("p", "sleep 1.5", begin=begin.isoformat()))
    child = cluster.submit(job("c", "true", depends_on=[f"after:{parent}"]))
    waiting = wait_for(cluster, child, lambda info: info.reason == "Dependency")
    assert waiting.state is JobState.PENDING
    infos = finish(cluster, [parent, child])
    assert infos[child].start_time >= infos[parent].start_time  # type: ignore[operator]
    assert infos[child].start_time < infos[parent].end_time  # type: ignore[operator]


def test_afterany_afternotok_and_afterok_after_a_failure(cluster: Cluster) -> None:
    parent = cluster.submit(job("bad", "sleep 0.3; exit 4"))
    anyway = cluster.submit(job("any", "true", depends_on=[f"afterany:{parent}"]))
    rescue = cluster.submit(job("rescue", "true", depends_on=[f"afternotok:{parent}"]))
    never = cluster.submit(job("never", "touch ran", depends_on=[f"afterok:{parent}"]))
    infos = finish(cluster, [parent, anyway, rescue, never])
    assert infos[parent].state is JobState.FAILED
    assert infos[parent].exit_code == 4
    assert infos[anyway].state is JobState.COMPLETED
    assert infos[rescue].state is JobState.COMPLETED
    assert infos[rescue].start_time >= infos[parent].end_time  # type: ignore[operator]
    assert infos[never].state is JobState.CANCELLED
    assert infos[never].reason == "DependencyNeverSatisfied"
    assert infos[never].start_time is None
    assert not Path("ran").exists()


def test_afternotok_on_a_success_is_never_satisfied(cluster: Cluster) -> None:
    parent = cluster.submit(job("good", "true"))
    child = cluster.submit(job("rescue", "true", depends_on=[f"afternotok:{parent}"]))
    info = finish(cluster, child)[child]
    assert (info.state, info.reason) == (JobState.CANCELLED, "DependencyNeverSatisfied")


def test_dependency_on_an_array_waits_for_every_task(cluster: Cluster) -> None:
    array = cluster.submit(job("arr", 'sleep "0.$HPCBRIDGE_ARRAY_INDEX"', array="1-3"))
    child = cluster.submit(job("after-arr", "true", depends_on=[f"afterok:{array}"]))
    infos = finish(cluster, [array, child])
    assert infos[child].state is JobState.COMPLETED
    assert infos[child].start_time >= infos[array].end_time  # type: ignore[operator]


def test_singleton_waits_for_any_running_job_of_its_name(cluster: Cluster) -> None:
    # The plain job runs until the test opens its gate, so the check below is not a race.
    plain = cluster.submit(job("solo", "until [ -e gate ]; do sleep 0.05; done"))
    wait_for(cluster, plain, running)
    first = cluster.submit(job("solo", "sleep 0.3", depends_on=["singleton"]))
    second = cluster.submit(job("solo", "sleep 0.3", depends_on=["singleton"]))
    other = cluster.submit(job("other", "true", depends_on=["singleton"]))
    assert finish(cluster, other)[other].state is JobState.COMPLETED
    assert cluster.status(first)[first].state is JobState.PENDING
    Path("gate").touch()
    infos = finish(cluster, [plain, first, second])
    assert infos[first].start_time >= infos[plain].end_time  # type: ignore[operator]
    assert infos[second].start_time >= infos[first].end_time  # type: ignore[operator]


def test_unknown_dependency_is_refused_at_submit(cluster: Cluster) -> None:
    with pytest.raises(SubmitError, match=r"depends_on.*Job dependency problem.*424242"):
        cluster.submit(job("orphan", "true", depends_on=["afterok:424242"]))
    with pytest.raises(SubmitError, match="depends_on"):
        cluster.submit(job("orphan", "true", depends_on=["afterok:1_7"]))


# -- time limits and signals -------------------------------------------------------------------


def test_walltime_ends_in_timeout_and_kills_the_whole_group(cluster: Cluster) -> None:
    job_id = cluster.submit(job("slow", "sleep 60 & sleep 60", resources={"walltime": "0:01"}))
    wait_for(cluster, job_id, running)
    pgid = record(cluster, job_id)["pid"]
    assert pgid is not None
    info = finish(cluster, job_id)[job_id]
    assert info.state is JobState.TIMEOUT
    assert info.exit_signal == signal.SIGTERM
    assert 1 <= info.elapsed_seconds < 4  # type: ignore[operator]
    assert group_gone(pgid)


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(cluster: Cluster) -> None:
    command = "trap '' TERM; while true; do sleep 0.1; done"
    job_id = cluster.submit(job("stubborn", command, resources={"walltime": "0:01"}))
    info = finish(cluster, job_id)[job_id]
    assert info.state is JobState.TIMEOUT
    assert info.exit_signal == signal.SIGKILL
    assert info.elapsed_seconds >= 2.5  # type: ignore[operator]


def test_signal_reaches_the_batch_shell_before_the_limit(cluster: Cluster) -> None:
    command = "trap 'date +%s.%N > signalled; exit 0' USR1; sleep 60 & wait"
    job_id = cluster.submit(job("sig", command, resources={"walltime": "0:04"}, signal="B:USR1@3"))
    info = finish(cluster, job_id)[job_id]
    assert info.state is JobState.COMPLETED
    signalled = float(Path("signalled").read_text())
    assert 0.5 < signalled - info.start_time.timestamp() < 2.5  # type: ignore[union-attr]


def test_signal_without_b_goes_to_the_whole_job(cluster: Cluster) -> None:
    command = "sleep 60; echo never"
    job_id = cluster.submit(job("sig", command, resources={"walltime": "0:03"}, signal="INT@2"))
    info = finish(cluster, job_id)[job_id]
    assert info.state is JobState.FAILED  # SIGINT ended sleep and the shell before the limit
    assert info.elapsed_seconds < 2.5  # type: ignore[operator]


# -- requeue, hold, cancel ---------------------------------------------------------------------


def test_requeue_of_a_running_job_runs_it_again(cluster: Cluster) -> None:
    command = 'echo "run $HPCBRIDGE_JOB_ID"; [ -e again ] || { touch again; sleep 60; }'
    job_id = cluster.submit(job("rq", command, stdout="rq.out"))
    wait_for(cluster, job_id, running)
    first_group = record(cluster, job_id)["pid"]
    cluster.requeue(job_id)
    info = finish(cluster, job_id)[job_id]
    assert (info.state, info.restarts) == (JobState.COMPLETED, 1)
    assert Path("rq.out").read_text() == f"run {job_id}\nrun {job_id}\n"
    assert first_group is not None
    assert group_gone(first_group)


def test_requeue_of_a_finished_job_runs_it_again(cluster: Cluster) -> None:
    job_id = cluster.submit(job("done", "echo once", stdout="done.out"))
    assert finish(cluster, job_id)[job_id].state is JobState.COMPLETED
    cluster.requeue(job_id)
    finish(cluster, job_id)
    cluster.requeue(job_id)
    info = finish(cluster, job_id)[job_id]
    assert (info.state, info.restarts) == (JobState.COMPLETED, 2)
    assert Path("done.out").read_text() == "once\nonce\nonce\n"


def test_requeue_refusals(cluster: Cluster) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    pending = cluster.submit(job("later", "true", begin=later))
    with pytest.raises(SchedulerError, match="pending execution"):
        cluster.requeue(pending)
    fixed = cluster.submit(job("fixed", "true", requeue=False))
    finish(cluster, fixed)
    with pytest.raises(SchedulerError, match="presently disabled"):
        cluster.requeue(fixed)


def test_hold_and_release_a_pending_job(cluster: Cluster) -> None:
    # Far enough ahead that a loaded machine still holds the job before its begin time.
    later = datetime.now(UTC) + timedelta(seconds=5)
    job_id = cluster.submit(job("held", "true", begin=later))
    assert cluster.status(job_id)[job_id].reason == "BeginTime"
    cluster.hold(job_id)
    info = cluster.status(job_id)[job_id]
    assert info.held
    assert info.reason == "JobHeldUser"
    time.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()) + 0.5)
    assert cluster.status(job_id)[job_id].state is JobState.PENDING  # held past its begin time
    cluster.release(job_id)
    assert finish(cluster, job_id)[job_id].state is JobState.COMPLETED
    with pytest.raises(SchedulerError, match="no longer pending"):
        cluster.hold(job_id)


def test_hold_of_a_running_job_is_refused(cluster: Cluster) -> None:
    job_id = cluster.submit(job("busy", "sleep 60"))
    wait_for(cluster, job_id, running)
    with pytest.raises(SchedulerError, match="Job is no longer pending execution"):
        cluster.hold(job_id)
    cluster.cancel(job_id)


def test_hold_of_an_array_skips_started_tasks(cluster: Cluster) -> None:
    gated = "until [ -e gate ]; do sleep 0.05; done"  # task 1 runs until the test is done looking
    array = cluster.submit(job("harr", gated, array="1-3%1"))
    wait_for(cluster, f"{array}_1", running)
    cluster.hold(array)
    infos = cluster.status(array)
    assert infos[f"{array}_1"].state is JobState.RUNNING
    assert infos[f"{array}_2"].held
    assert infos[f"{array}_3"].held
    Path("gate").touch()
    cluster.release(array)
    assert finish(cluster, array)[array].state is JobState.COMPLETED


def test_cancel_pending_and_running_jobs(cluster: Cluster) -> None:
    busy = cluster.submit(job("busy", "sleep 60 & sleep 60"))
    waiting = cluster.submit(job("waiting", "touch ran", depends_on=[f"afterok:{busy}"]))
    wait_for(cluster, busy, running)
    pgid = record(cluster, busy)["pid"]
    cluster.cancel([waiting, busy])
    infos = finish(cluster, [busy, waiting])
    assert infos[busy].state is JobState.CANCELLED
    assert infos[waiting].state is JobState.CANCELLED
    assert infos[waiting].start_time is None
    assert pgid is not None
    assert group_gone(pgid)
    assert not Path("ran").exists()


def test_a_cancelled_job_stays_cancelled_even_if_it_exits_cleanly(cluster: Cluster) -> None:
    job_id = cluster.submit(job("graceful", "trap 'exit 0' TERM; sleep 60 & wait"))
    wait_for(cluster, job_id, running)
    cluster.cancel(job_id)
    assert cluster.status(job_id)[job_id].state is JobState.CANCELLED
    info = wait_for(cluster, job_id, lambda i: i.exit_code is not None)
    assert (info.state, info.exit_code, info.exit_signal) == (JobState.CANCELLED, 0, 0)


def test_cancel_racing_natural_ends_never_rewrites_an_ending(cluster: Cluster) -> None:
    ids = [cluster.submit(job("race", f"sleep 0.{n % 3}")) for n in range(12)]
    cluster.cancel(ids)
    settled = {job_id: info.state for job_id, info in cluster.status(ids).items()}
    assert all(state.is_terminal for state in settled.values())
    deadline = time.monotonic() + 10
    while any(record(cluster, job_id)["pid"] for job_id in ids) and time.monotonic() < deadline:
        time.sleep(0.05)  # until every runner has recorded how its process ended
    assert {job_id: info.state for job_id, info in cluster.status(ids).items()} == settled


def test_cancel_of_a_finished_job_changes_nothing(cluster: Cluster) -> None:
    job_id = cluster.submit(job("quick", "true"))
    before = finish(cluster, job_id)[job_id]
    cluster.cancel(job_id)
    assert cluster.status(job_id)[job_id] == before


def test_unknown_ids(cluster: Cluster) -> None:
    known = cluster.submit(job("known", "sleep 60"))
    assert cluster.backend.status(["999", "abc", "1_x", f"{known}_0", ""]) == {}
    for verb in (cluster.hold, cluster.release, cluster.requeue):
        with pytest.raises(JobNotFound, match="999"):
            verb(["999"])
    with pytest.raises(JobNotFound, match="999"):
        cluster.cancel([known, "999"])
    assert finish(cluster, known)[known].state is JobState.CANCELLED


# -- environment, files, processes -------------------------------------------------------------


def test_environment_and_working_directory(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCBRIDGE_TEST_VALUE", "from the submitter")
    command = 'echo "$HPCBRIDGE_JOB_ID|$HPCBRIDGE_ARRAY_INDEX|$HPCBRIDGE_TEST_VALUE|$PWD"'
    plain = cluster.submit(job("env", command, stdout="env-%j.txt"))
    (tmp_path / "elsewhere").mkdir()
    array = cluster.submit(
        job("env", command, array="7", workdir=str(tmp_path / "elsewhere"), stdout="env-%j.txt")
    )
    finish(cluster, [plain, array])
    work = Path.cwd()
    assert (work / f"env-{plain}.txt").read_text() == f"{plain}||from the submitter|{work}\n"
    elsewhere = tmp_path / "elsewhere"
    assert (elsewhere / f"env-{array}_7.txt").read_text() == (
        f"{array}_7|7|from the submitter|{elsewhere}\n"
    )


def test_output_file_patterns(cluster: Cluster) -> None:
    command = "echo out; echo err >&2"
    plain = cluster.submit(job("pat", command))
    split = cluster.submit(job("pat", command, stdout="%x-%j.o", stderr="%x-%j.e"))
    array = cluster.submit(job("pat", command, array="1-2", stdout="a%A-%3a-100%%.o"))
    default_array = cluster.submit(job("pat", command, array="5"))
    finish(cluster, [plain, split, array, default_array])
    assert Path(f"hpcbridge-{plain}.out").read_text() == "out\nerr\n"
    assert Path(f"pat-{split}.o").read_text() == "out\n"
    assert Path(f"pat-{split}.e").read_text() == "err\n"
    assert Path(f"a{array}-001-100%.o").read_text() == "out\nerr\n"
    assert Path(f"a{array}-002-100%.o").exists()
    assert Path(f"hpcbridge-{default_array}_5.out").exists()


def test_expand_pattern_matches_sbatch() -> None:
    values = {"A": "12", "a": "3", "j": "12_3", "N": "node", "u": "me", "x": "name"}
    assert expand_pattern("%x_%A_%a_%j_%N_%u", values) == "name_12_3_12_3_node_me"
    assert expand_pattern("%4a%%%q", values) == "0003%%q"


def test_missing_workdir_fails_the_job(cluster: Cluster, tmp_path: Path) -> None:
    job_id = cluster.submit(job("lost", "true", workdir=str(tmp_path / "missing")))
    info = finish(cluster, job_id)[job_id]
    assert (info.state, info.exit_code) == (JobState.FAILED, 1)


def test_the_job_outlives_the_process_that_submitted_it(tmp_path: Path) -> None:
    # The job waits for a gate the test opens only after the submitter has exited, so the
    # submitter cannot have waited for it, however slowly a loaded machine runs either.
    state, work = tmp_path / "state", tmp_path / "work"
    work.mkdir()
    submitter = textwrap.dedent(
        f"""
        from hpcbridge import Cluster
        cluster = Cluster.local(state_dir={str(state)!r})
        print(cluster.submit({{"name": "orphan", "workdir": {str(work)!r},
                              "command": "until [ -e go ]; do sleep 0.1; done; echo done > done"}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", submitter], capture_output=True, text=True, check=True
    )
    job_id = done.stdout.strip()
    with Cluster.local(state_dir=state) as cluster:
        assert cluster.status(job_id)[job_id].state in {JobState.PENDING, JobState.RUNNING}
        (work / "go").touch()
        assert finish(cluster, job_id)[job_id].state is JobState.COMPLETED
    assert (work / "done").read_text() == "done\n"


def test_a_dead_runner_shows_as_node_fail(cluster: Cluster) -> None:
    job_id = cluster.submit(job("victim", "sleep 60"))
    wait_for(cluster, job_id, running)
    runner, pgid = record(cluster, job_id)["runner"], record(cluster, job_id)["pid"]
    assert runner is not None
    assert pgid is not None
    os.kill(runner, signal.SIGTERM)
    info = wait_for(cluster, job_id, lambda i: i.state.is_terminal)
    assert (info.state, info.reason) == (JobState.NODE_FAIL, "RunnerGone")
    assert group_gone(pgid)


def test_a_job_whose_runner_was_killed_runs_until_its_processes_end(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGKILL leaves the runner no chance to stop the job: its work goes on unsupervised.
    Until that work has ended the job is RUNNING (RunnerGone), and an ``afterany`` dependant
    waits; it then fails as NODE_FAIL and only then the dependant starts."""
    release = tmp_path / "release"
    parent = cluster.submit(
        job("orphaned", f"while [ ! -e {release} ]; do sleep 0.1; done; echo parent > out")
    )
    wait_for(cluster, parent, running)
    child = cluster.submit(job("after", "cat out > seen", depends_on=[f"afterany:{parent}"]))
    os.kill(record(cluster, parent)["runner"] or 0, signal.SIGKILL)
    try:
        time.sleep(1)  # several polls of the dependant's runner
        info = cluster.status(parent)[parent]
        assert (info.state, info.reason) == (JobState.RUNNING, "RunnerGone")
        assert cluster.status(child)[child].state is JobState.PENDING
    finally:
        release.touch()  # no supervisor is left to end the loop if the test fails
    ended = finish(cluster, [parent, child])
    assert (ended[parent].state, ended[parent].reason) == (JobState.NODE_FAIL, "RunnerGone")
    assert ended[child].state is JobState.COMPLETED
    assert Path("seen").read_text() == "parent\n"  # it ran after the parent's work had ended


def test_no_more_tasks_run_at_once_than_the_machine_allows(tmp_path: Path) -> None:
    """Six jobs with room for three: three run, the others wait PENDING (Resources) until a
    slot is free, and all complete; the default room is one task per CPU."""
    site = SiteConfig(name="small", scheduler="local", state_dir=tmp_path / "state")
    with Cluster(site) as default:
        assert isinstance(default.backend, LocalBackend)
        assert default.backend.max_running == os.cpu_count()
    site = site.model_copy(update={"local": LocalOptions(max_running=3)})
    work, release = tmp_path / "work", tmp_path / "release"
    work.mkdir()
    hold_on = f"while [ ! -e {release} ]; do sleep 0.1; done"
    with Cluster(site) as cluster:
        jobs = [cluster.submit(job(f"j{n}", hold_on, workdir=str(work))) for n in range(6)]
        try:
            poll(
                cluster,
                jobs,
                lambda infos: (
                    sorted((i.state, i.reason or "") for i in infos)
                    == [(JobState.PENDING, "Resources")] * 3 + [(JobState.RUNNING, "")] * 3
                ),
            )
            time.sleep(1)  # several polls of every runner: still three
            infos = cluster.status(jobs)
            assert sum(i.state is JobState.RUNNING for i in infos.values()) == 3
        finally:
            release.touch()
        ended = finish(cluster, jobs, timeout=60)
    assert {info.state for info in ended.values()} == {JobState.COMPLETED}


def poll(
    cluster: Cluster, job_ids: list[str], condition: Callable[[list[JobInfo]], bool]
) -> dict[str, JobInfo]:
    deadline = time.monotonic() + 30
    while not condition(list((infos := cluster.status(job_ids)).values())):
        assert time.monotonic() < deadline, infos
        time.sleep(0.05)
    return infos


def test_begin_time_and_deadline(cluster: Cluster) -> None:
    # Far enough ahead that a submission on a loaded machine (a runner process starting) is
    # still seen waiting: with 1 s it had sometimes started already.
    soon = datetime.now(UTC) + timedelta(seconds=4)
    later = cluster.submit(job("later", "true", begin=soon))
    assert cluster.status(later)[later].reason == "BeginTime"
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    too_late = cluster.submit(
        job("late", "true", deadline=deadline, resources={"walltime": "10:00"})
    )
    infos = finish(cluster, [later, too_late])
    assert infos[later].start_time >= soon  # type: ignore[operator]
    assert infos[too_late].state is JobState.DEADLINE


# -- the store, without runners ----------------------------------------------------------------


def _quiet_backend(state: Path) -> LocalBackend:
    """A backend whose runners are never started: only the store is exercised."""
    return LocalBackend(FakeTransport(lambda argv, stdin: ""), state_dir=state)


def test_concurrent_submitters_get_unique_ids(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from hpcbridge.backends.local.backend import LocalBackend
        from hpcbridge.jobs.spec import JobSpec
        from hpcbridge.transports import FakeTransport
        backend = LocalBackend(FakeTransport(lambda a, s: ""), state_dir={str(tmp_path)!r})
        spec = JobSpec(name="race", command="true")
        print(" ".join(backend.submit("true", spec) for _ in range(15)))
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = [job_id for w in workers for job_id in w.communicate()[0].split()]
    assert sorted(map(int, ids)) == list(range(1, 61))
    assert _quiet_backend(tmp_path).describe().endswith(", 60 jobs")


def test_status_of_a_thousand_finished_jobs(tmp_path: Path) -> None:
    """Complete and right; its speed is benchmarks/bench_local.py's (by hand, not timed here)."""
    backend = _quiet_backend(tmp_path)
    template = backend.store.members(backend.submit("true", JobSpec(name="many", command="true")))[
        0
    ]
    template.update({"state": st.COMPLETED, "start": template["submit"], "end": template["submit"]})
    template.update({"exit_code": 0, "exit_signal": 0, "node": "here"})
    ids = [str(job) for job in range(1, 1001)]
    for job in range(1, 1001):
        backend.store.job_dir(job).mkdir(exist_ok=True)
        backend.store.write_record({**template, "id": str(job), "job": job})
    infos = backend.status(ids)
    assert sorted(infos, key=int) == ids
    assert all(info.state is JobState.COMPLETED for info in infos.values())


def test_a_runner_that_cannot_start_fails_the_submission(tmp_path: Path) -> None:
    backend = LocalBackend(
        FakeTransport(lambda argv, stdin: (1, "", "No module named hpcbridge")), state_dir=tmp_path
    )
    with pytest.raises(SubmitError, match="runner"):
        backend.submit("true", JobSpec(name="doomed", command="true"))
    assert backend.status(["1"])["1"].state is JobState.BOOT_FAIL


def test_cancel_signals_through_the_transport(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    backend = LocalBackend(
        FakeTransport(lambda argv, stdin: calls.append(argv) or ""), state_dir=tmp_path
    )
    job_id = backend.submit("true", JobSpec(name="x", command="true"))
    stored = backend.store.members(job_id)[0]
    stored.update({"state": st.RUNNING, "pid": 4242424, "runner": os.getpid()})
    backend.store.write_record(stored)
    backend.cancel([job_id])
    assert calls[-1] == ["kill", "-s", "TERM", "--", "-4242424"]
    assert backend.status([job_id])[job_id].state is JobState.CANCELLED
    assert calls[0][1:3] == ["-m", "hpcbridge.backends.local.runner"]


def test_local_template_has_no_directives(cluster: Cluster) -> None:
    script = cluster.render(job("tpl", "echo hi", env={"GREETING": "it's me"}))
    assert script.startswith("#!/bin/bash\n")
    assert "#SBATCH" not in script
    assert "export GREETING='it'\"'\"'s me'\n" in script
    assert script.rstrip().endswith("echo hi")
