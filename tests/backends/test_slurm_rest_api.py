"""slurmrestd's v0.0.38 builders and parsers, against answers captured from the test
cluster's slurmrestd (tests/data/slurm/rest) and scripts rendered by the Slurm template."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hpcbridge import Cluster, JobState, SchedulerError, SubmitError
from hpcbridge.backends.slurm import rest_api
from hpcbridge.backends.slurm.backend import ERRORS
from hpcbridge.transports.base import CommandResult

DATA = Path(__file__).parents[1] / "data" / "slurm" / "rest"


def captured(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def rendered(**fields: Any) -> str:
    with Cluster.from_site("test-slurm") as cluster:
        return cluster.render({"name": "demo", "command": "echo hi", **fields})


def test_jobs_answer_gives_states_exit_codes_and_array_tasks_by_squeue_names() -> None:
    infos = {info.job_id: info for info in rest_api.parse_jobs(captured("jobs.json")["jobs"])}
    assert set(infos) == {"21139", "21140_1", "21140_2", "21140_3", "21141", "21142", "21143"}
    exited = infos["21139"]  # sbatch --wrap "exit 3": wait status 768
    assert (exited.state, exited.exit_code, exited.exit_signal) == (JobState.FAILED, 3, 0)
    assert exited.start_time == datetime(2026, 12, 3, 18, 38, 40, tzinfo=UTC)
    killed = infos["21143"]  # the batch shell killed by SIGKILL: wait status 9
    assert (killed.exit_code, killed.exit_signal) == (0, 9)
    held = infos["21141"]
    assert (held.held, held.exit_code, held.start_time) == (True, None, None)
    running = infos["21142"]
    # Its end time in the record is a forecast, and it has no exit code yet.
    assert (running.state, running.end_time, running.exit_code, running.nodes) == (
        JobState.RUNNING,
        None,
        None,
        "vm",
    )
    # The running task keeps the array's own job id (21140) in the record.
    task = infos["21140_3"]
    assert (task.array_job_id, task.array_task_id, task.state) == ("21140", 3, JobState.RUNNING)
    assert infos["21140_1"].state is JobState.COMPLETED


def test_an_arrays_waiting_tasks_are_each_listed_as_squeue_array_lists_them() -> None:
    # sbatch --hold --array=1-6:2%2: one record, task string "1,3,5%2".
    infos = rest_api.parse_jobs(captured("job-pending-array.json")["jobs"])
    assert [info.job_id for info in infos] == ["21281_1", "21281_3", "21281_5"]
    assert all(info.held and info.array_job_id == "21281" for info in infos)
    assert [info.array_task_id for info in infos] == [1, 3, 5]
    record = captured("job-pending-array.json")["jobs"][0]
    assert rest_api.names_of(record) == {"21281", "21281_1", "21281_3", "21281_5"}


@pytest.mark.parametrize(
    ("expression", "indices"),
    [("1-4", [1, 2, 3, 4]), ("1,3,5%2", [1, 3, 5]), ("0-10:5", [0, 5, 10]), ("7", [7])],
)
def test_task_indices(expression: str, indices: list[int]) -> None:
    assert rest_api.task_indices(expression) == indices


def test_every_directive_the_template_writes_becomes_a_job_field() -> None:
    script = rendered(
        partition="long",
        account="physics",
        qos="high",
        resources={
            "nodes": 1,
            "ntasks": 2,
            "cpus_per_task": 3,
            "memory": "2G",
            "gpus": 1,
            "gpu_type": "a100",
            "walltime": "1-02:03:04",
        },
        array="1-9%3",
        depends_on=["afterok:42"],
        requeue=True,
        begin="2030-01-02T03:04:05",
        deadline="2030-01-03T00:00:00",
        hold=True,
        nice=10,
        workdir="/scratch/run",
        stdout="out-%j.txt",
        stderr="err-%j.txt",
    )
    job = rest_api.job_description(script, environment={"A": "1"}, cwd="/home/u")["job"]
    assert job == {
        "environment": {"A": "1"},
        "current_working_directory": "/scratch/run",  # --chdir wins over the caller's
        "name": "demo",
        "partition": "long",
        "account": "physics",
        "qos": "high",
        "nodes": [1, 1],
        "tasks": 2,
        "cpus_per_task": 3,
        "memory_per_node": 2048,
        "gres": "gpu:a100:1",
        "time_limit": 1564,  # 1 day 2:03:04 is 1563 minutes and 4 s: rounded up
        "array": "1-9%3",
        "dependency": "afterok:42",
        "kill_on_invalid_dependency": True,
        "requeue": True,
        "begin_time": "2030-01-02T03:04:05",
        "deadline": "2030-01-03T00:00:00",
        "hold": True,
        "nice": 10,
        "standard_output": "out-%j.txt",
        "standard_error": "err-%j.txt",
    }


def test_quoted_directive_values_arrive_unquoted() -> None:
    script = "#!/bin/bash\n#SBATCH --job-name='a b' --comment=\"x'y\"\necho\n#SBATCH --hold\n"
    job = rest_api.job_description(script, environment={}, cwd="/")["job"]
    assert (job["name"], job["comment"]) == ("a b", "x'y")
    assert "hold" not in job  # sbatch stops reading directives at the first command


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"signal": "B:USR1@50"}, "--signal=B:USR1@50: slurmrestd v0.0.38 rejects the B:"),
        ({"exclude_nodes": "node1"}, "--exclude: no field for it"),
    ],
)
def test_directives_the_api_cannot_carry_say_which(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(rest_api.NotExpressible, match=reason):
        rest_api.job_description(rendered(**fields), environment={}, cwd="/")


def test_a_refused_submission_names_the_field_as_the_cli_driver_does() -> None:
    payload = captured("submit-bad-partition.json")
    message = rest_api.error_text(payload)
    assert message == "Invalid partition name specified"
    result = CommandResult(("slurmrestd", "POST /job/submit"), 500, "", message)
    error = ERRORS.refusal(result)
    assert isinstance(error, SubmitError)
    assert "slurmrestd refused the job (partition)" in str(error)


def test_the_accounting_endpoint_misreports_exit_codes_so_sacct_is_asked() -> None:
    # The job exited 3 (sacct: FAILED 3:0); dbv0.0.38 says SUCCESS, return code 0.
    record = captured("slurmdb-job-exit-3.json")["jobs"][0]
    assert record["state"]["current"] == "FAILED"
    assert record["exit_code"] == {"status": "SUCCESS", "return_code": 0}


def jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.signature"


def test_token_claims_give_the_user_and_the_expiry() -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    user, when = rest_api.token_claims(jwt({"sun": "alice", "exp": int(expires.timestamp())}))
    assert (user, when) == ("alice", expires)
    with pytest.raises(SchedulerError, match="not a token from scontrol token"):
        rest_api.token_claims(jwt({"exp": 1}))
