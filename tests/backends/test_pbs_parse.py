"""PBS parsers: on the real OpenPBS outputs in ../shared/pbs-reference, and small edge cases."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcbridge import JobInfo, JobSpec, JobState, SchedulerError, SpecError
from hpcbridge.backends.pbs import cli, parse
from hpcbridge.jobs.sections import Dependency


def infos_of(path: Path) -> dict[str, object]:
    jobs = parse.parse_qstat_json(path.read_text())
    return {job_id: parse.job_info(job_id, attrs) for job_id, attrs in jobs.items()}


@pytest.mark.parametrize(
    ("file", "job_id", "state", "exit_code", "reason"),
    [
        ("qstat-f-F-json_running.json", "1.vm", JobState.RUNNING, None, None),
        ("qstat-f-F-json_queued.json", "3.vm", JobState.PENDING, None, "Not Running"),
        ("qstat-f-F-json_held-user.json", "4.vm", JobState.PENDING, None, "JobHeldUser"),
        ("qstat-f-F-json_held-dependency.json", "2.vm", JobState.PENDING, None, "Dependency"),
        ("qstat-f-F-json_waiting-W.json", "17.vm", JobState.PENDING, None, "BeginTime"),
        ("qstat-f-F-json_suspended.json", "18.vm", JobState.SUSPENDED, None, None),
        ("qstat-x-f-F-json_finished.json", "1.vm", JobState.COMPLETED, 0, None),
        ("qstat-x-f-F-json_failed-exit3.json", "7.vm", JobState.FAILED, 3, None),
        ("qstat-x-f-F-json_walltime-exceeded.json", "9.vm", JobState.TIMEOUT, None, None),
        ("qstat-x-f-F-json_deleted-while-running.json", "5.vm", JobState.CANCELLED, None, None),
        ("qstat-x-f-F-json_deleted-while-queued.json", "16.vm", JobState.CANCELLED, None, None),
        (
            "qstat-x-f-F-json_dependency-never-satisfied.json",
            "8.vm",
            JobState.CANCELLED,
            None,
            None,
        ),
    ],
)
def test_real_qstat_json(  # noqa: PLR0917 (one parameter per column of the table)
    pbs_reference: Path,
    file: str,
    job_id: str,
    state: JobState,
    exit_code: int | None,
    reason: str | None,
) -> None:
    info = infos_of(pbs_reference / file)[job_id]
    assert info.state is state  # type: ignore[attr-defined]
    assert info.exit_code == exit_code  # type: ignore[attr-defined]
    if reason:
        assert info.reason.startswith(reason)  # type: ignore[attr-defined]


def test_real_running_job_details(pbs_reference: Path) -> None:
    info = infos_of(pbs_reference / "qstat-f-F-json_running.json")["1.vm"]
    assert info.name == "long_run"  # type: ignore[attr-defined]
    assert info.nodes == "vm"  # type: ignore[attr-defined]
    assert info.partition == "workq"  # type: ignore[attr-defined]
    assert info.start_time == datetime(2026, 11, 23, 12, 13, 21, tzinfo=UTC)  # type: ignore[attr-defined]


def test_real_rerun_counts_restarts_and_signal_exit(pbs_reference: Path) -> None:
    rerun = infos_of(pbs_reference / "qstat-f-F-json_running-after-qrerun.json")["1.vm"]
    assert rerun.restarts == 1  # type: ignore[attr-defined]
    killed = infos_of(pbs_reference / "qstat-x-f-F-json_deleted-while-running.json")["5.vm"]
    assert killed.exit_signal == 15  # type: ignore[attr-defined]


def test_real_array_subjobs(pbs_reference: Path) -> None:
    jobs = parse.parse_qstat_json(
        (pbs_reference / "qstat-x-t-f-F-json_array-finished.json").read_text()
    )
    assert parse.is_array_parent(jobs["10[].vm"])
    task = parse.job_info("10[2].vm", jobs["10[2].vm"])
    assert task.array_job_id == "10[].vm"
    assert task.array_task_id == 2
    assert task.state is JobState.COMPLETED


def test_real_text_and_json_agree(pbs_reference: Path) -> None:
    text = parse.parse_qstat_text((pbs_reference / "qstat-x-f_finished.txt").read_text())
    from_text = parse.job_info("1.vm", text["1.vm"])
    from_json = infos_of(pbs_reference / "qstat-x-f-F-json_finished.json")["1.vm"]
    assert from_text == from_json
    # Continuation lines (tab-indented) are joined back, mid-word breaks included.
    assert "PBS_O_WORKDIR=/home/hpcuser" in text["1.vm"]["Variable_List"]
    assert text["1.vm"]["comment"].endswith("and finished")


def test_real_submit_outputs(pbs_reference: Path) -> None:
    assert parse.parse_submit((pbs_reference / "qsub_stdout.txt").read_text()) == "1.vm"
    assert parse.parse_submit((pbs_reference / "qsub-J_array_stdout.txt").read_text()) == "10[].vm"


def test_error_documents_have_no_jobs() -> None:
    document = (
        '{\n\t"timestamp":\t1795436122,\n\t"pbs_version":\t"23.06.06",\n\t"pbs_server":\t"vm"\n}\n'
    )
    assert parse.parse_qstat_json(document) == {}
    assert parse.parse_qstat_json("") == {}
    with pytest.raises(SchedulerError, match="does not parse"):
        parse.parse_qstat_json("{not json")
    with pytest.raises(SchedulerError, match="instead of a job id"):
        parse.parse_submit("qsub: Unknown queue")


def test_torque_text_with_completed_state_and_epoch_times() -> None:
    text = (
        "Job Id: 42.torque.example.org\n"
        "    Job_Name = sim\n    job_state = C\n    queue = batch\n"
        "    exit_status = 2\n    start_time = 1795435885\n    comp_time = 1795435890\n"
        "    exec_host = n1/0+n1/1+n2/0\n"
    )
    [(job_id, attributes)] = parse.parse_qstat_text(text).items()
    info = parse.job_info(job_id, attributes)
    assert info.state is JobState.FAILED
    assert info.exit_code == 2
    assert info.nodes == "n1,n2"
    assert info.end_time == datetime.fromtimestamp(1795435890, UTC)


@pytest.mark.parametrize(
    ("status", "comment", "state"),
    [
        (None, "", JobState.CANCELLED),
        (0, "", JobState.COMPLETED),
        (1, "", JobState.FAILED),
        (-29, "", JobState.TIMEOUT),
        (-27, "", JobState.OUT_OF_MEMORY),
        (-20, "", JobState.NODE_FAIL),
        (-1, "", JobState.BOOT_FAIL),
        (-11, "", JobState.REQUEUED),
        (-99, "", JobState.FAILED),
        (271, "and terminated by alice", JobState.CANCELLED),
        (265, "", JobState.FAILED),
    ],
)
def test_exit_status_conventions(status: int | None, comment: str, state: JobState) -> None:
    assert parse.finished_state(status, comment) is state


def test_unknown_letters_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse.pbs_state("Z", None) is JobState.UNKNOWN
    assert "'Z'" in caplog.text


def spec(**fields: object) -> JobSpec:
    return JobSpec.parse({"name": "j", "command": "true", **fields})


def test_select_statements() -> None:
    assert cli.select_statement(spec(), None) == "1:ncpus=1"
    wide = spec(resources={"nodes": 2, "ntasks": 4, "cpus_per_task": 3, "memory": "2G", "gpus": 4})
    assert cli.select_statement(wide, None) == "2:ncpus=6:mpiprocs=2:mem=2048mb:ngpus=2"
    with pytest.raises(SpecError, match=r"resources\.ntasks: 3 tasks do not split evenly"):
        cli.select_statement(spec(resources={"nodes": 2, "ntasks": 3}), None)
    with pytest.raises(SpecError, match=r"pbs\.gpu_type_resource"):
        cli.select_statement(spec(resources={"gpus": 1, "gpu_type": "a100"}), None)


def test_directive_translations() -> None:
    assert (
        cli.dependency_expression(
            [
                Dependency(job="1.s"),
                Dependency(job="2.s"),
                Dependency(condition="afterany", job="3.s"),
            ]
        )
        == "afterok:1.s:2.s,afterany:3.s"
    )
    with pytest.raises(SpecError, match="singleton"):
        cli.dependency_expression([Dependency(condition="singleton")])
    assert cli.array_range(spec(array="1-10:2%3")) == "1-10:2%3"
    with pytest.raises(SpecError, match="one range"):
        cli.array_range(spec(array="1,3,5"))
    assert cli.priority(100) == -100
    assert cli.priority(None) is None
    with pytest.raises(SpecError, match="priority range"):
        cli.priority(-5000)
    assert cli.begin_time(datetime(2030, 1, 2, 3, 4, 5)) == "203001020304.05"
    assert cli.output_word("out/%x-%j_%a%%.log") == (
        'out/"${PBS_JOBNAME}"-"${PBS_JOBID}"_"${PBS_ARRAY_INDEX}"%.log'
    )
    assert cli.output_word("plain.out") == "plain.out"


def test_wrapped_text_values_join_to_what_pbs_holds(pbs_reference: Path) -> None:
    """qstat -f cuts a line at 79 columns, even mid-word, and keeps the trailing space; the
    continuation starts with one tab, which is no part of the value."""
    running = parse.parse_qstat_text(
        (pbs_reference / "multi-qdel_qstat-x-f_deleted-while-running.txt").read_text()
    )
    assert running["257.vm"]["comment"] == (
        "Job run at Thu Dec 03 at 08:31 on (vm:ncpus=1) and terminated by hpcuser@localhost"
    )
    queued = parse.parse_qstat_text(
        (pbs_reference / "multi-qdel_qstat-x-f_deleted-while-queued-long-comment.txt").read_text()
    )
    assert queued["276.vm"]["comment"] == (
        "Not Running: Insufficient amount of resource: ncpus (R: 2 A: 1 T: 2) and terminated"
    )


def test_text_of_several_jobs_agrees_with_their_json(pbs_reference: Path) -> None:
    """The text listing of three jobs (what several ids are asked in) against the JSON of the
    same server: every scalar attribute reads the same."""
    text = parse.parse_qstat_text(
        (pbs_reference / "multi-id_qstat-f-x-t_three-finished.txt").read_text()
    )
    assert list(text) == ["254.vm", "255.vm", "256.vm"]
    document = parse.parse_qstat_json(
        (pbs_reference / "multi-noid_qstat-x-f-F-json_all-history.json").read_text()
    )
    for job_id, attributes in text.items():
        for key, value in document[job_id].items():
            if not key.startswith("Variable_List."):  # one text value, split up in JSON
                assert attributes[key] == str(value), (job_id, key)
        assert parse.job_info(job_id, attributes) == parse.job_info(job_id, document[job_id])


@pytest.mark.parametrize(
    ("file", "job_id", "reason"),
    [
        ("multi-hold_qstat-f-F-json_dependency-plus-qhold.json", "261.vm", "JobHeldUser"),
        ("multi-hold_qstat-f-F-json_operator-hold.json", "262.vm", "JobHeldAdmin"),
        ("multi-hold_qstat-f-F-json_uos.json", "262.vm", "JobHeldAdmin"),
        (
            "multi-hold_qstat-f-F-json_dependency-released-user-hold-left.json",
            "261.vm",
            "JobHeldUser",
        ),
    ],
)
def test_a_hold_is_seen_whatever_the_order_of_hold_types(
    pbs_reference: Path, file: str, job_id: str, reason: str
) -> None:
    """Hold_Types letters come in the order s, o, u, p ("su": a dependency and a qhold)."""
    info = infos_of(pbs_reference / file)[job_id]
    assert isinstance(info, JobInfo)
    assert (info.state, info.reason, info.held) == (JobState.PENDING, reason, True)


def test_an_array_mid_run_reads_running_with_its_finished_subjobs_completed(
    pbs_reference: Path,
) -> None:
    """multi-array_qstat-f-F-json-t_midrun.json: the parent is B with Exit_status 0 already
    (still running), subjobs 1-2 are X (finished, qstat(1B): "X: subjob has completed")."""
    infos = infos_of(pbs_reference / "multi-array_qstat-f-F-json-t_midrun.json")
    states = {job_id: info.state for job_id, info in infos.items()}  # type: ignore[attr-defined]
    assert states == {
        "271[].vm": JobState.RUNNING,
        "271[1].vm": JobState.COMPLETED,
        "271[2].vm": JobState.COMPLETED,
        "271[3].vm": JobState.RUNNING,
        "271[4].vm": JobState.RUNNING,
    }
    assert infos["271[1].vm"].exit_code == 0  # type: ignore[attr-defined]
    assert infos["271[].vm"].end_time is None  # type: ignore[attr-defined]


def test_a_job_whose_dependency_was_refused_reads_cancelled(pbs_reference: Path) -> None:
    """266.vm (afterok:99999.vm): accepted, then F with no Exit_status (accounting: Q, A)."""
    case = (pbs_reference / "multi-qsub_errors_plain-user_cases.txt").read_text()
    block = case.split("the dependency-on-unknown job (266.vm)", 1)[1].split("[stdout]\n", 1)[1]
    text = "Job Id: 266.vm\n" + block.split("[stderr]", 1)[0]
    info = parse.job_info("266.vm", parse.parse_qstat_text(text)["266.vm"])
    assert (info.state, info.exit_code) == (JobState.CANCELLED, None)
