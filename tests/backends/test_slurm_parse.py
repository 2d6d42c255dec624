"""Slurm parsers against output captured from the real test cluster (tests/data/slurm)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcbridge import JobInfo, JobState, SchedulerError
from hpcbridge.backends.base import aggregate_array
from hpcbridge.backends.slurm import cli, parse
from hpcbridge.jobs.sections import Dependency

DATA = Path(__file__).parents[1] / "data" / "slurm"


def by_id(infos: list) -> dict:  # type: ignore[type-arg]
    return {info.job_id: info for info in infos}


def test_squeue_rows() -> None:
    infos = by_id(parse.parse_squeue((DATA / "squeue_mixed.txt").read_text()))
    assert infos["1067"].state is JobState.RUNNING
    assert infos["1067"].nodes == "vm"
    assert infos["1067"].start_time == datetime(2026, 11, 23, 13, 20, 10, tzinfo=UTC)
    assert infos["1067"].end_time is None  # squeue's %e is a forecast for running jobs
    assert infos["1068"].held
    assert infos["1071"].reason == "Dependency"
    assert infos["1070"].state is JobState.FAILED
    assert infos["1070"].end_time is not None
    assert infos["1069_2"].array_job_id == "1069"
    assert infos["1069_2"].array_task_id == 2
    assert infos["1069_2"].reason == "JobArrayTaskLimit"
    assert infos["1069_2"].start_time is None


def test_sacct_rows() -> None:
    infos = by_id(parse.parse_sacct((DATA / "sacct_mixed.txt").read_text()))
    assert infos["1067"].state is JobState.CANCELLED
    assert infos["1067"].raw_state == "CANCELLED by 0"
    assert infos["1070"].exit_code == 7
    assert infos["1070"].exit_signal == 0
    assert infos["1069_1"].end_time is None
    pending = infos["1069_[2-3%1]"]
    assert pending.array_job_id == "1069"
    assert pending.array_task_id is None
    assert pending.nodes is None
    assert infos["1073"].state is JobState.COMPLETED


def test_array_aggregate_is_unfinished_while_a_task_is() -> None:
    infos = parse.parse_sacct((DATA / "sacct_mixed.txt").read_text())
    array = aggregate_array("1069", [i for i in infos if i.array_job_id == "1069"])
    assert array.state is JobState.RUNNING
    assert array.exit_code is None


def test_every_documented_state_code_maps() -> None:
    long_names = [code for code in parse.SLURM_STATES if len(code) > 3]
    assert len(long_names) == 24  # squeue(1) JOB STATE CODES, Slurm 22.05
    assert parse.slurm_state("TIMEOUT") is JobState.TIMEOUT
    assert parse.slurm_state("CD") is JobState.COMPLETED


def test_unknown_state_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse.slurm_state("FUTURE_STATE") is JobState.UNKNOWN
    assert "FUTURE_STATE" in caplog.text


@pytest.mark.parametrize(("stdout", "job_id"), [("1234\n", "1234"), ("1234;cluster\n", "1234")])
def test_parsable_submit_output(stdout: str, job_id: str) -> None:
    assert parse.parse_submit(stdout) == job_id


def test_garbage_is_reported_not_guessed() -> None:
    with pytest.raises(SchedulerError, match="instead of a job id"):
        parse.parse_submit("Submitted batch job 12\n")
    with pytest.raises(SchedulerError, match="expected 13 fields"):
        parse.parse_squeue("1|2|3\n")


def test_dependency_expression_groups_conditions() -> None:
    deps = [
        Dependency(job="1"),
        Dependency(job="2"),
        Dependency(condition="afterany", job="3"),
        Dependency(condition="singleton"),
        Dependency(condition="singleton"),
    ]
    assert cli.dependency_expression(deps) == "afterok:1:2,afterany:3,singleton"


@pytest.mark.parametrize("name", ["squeue_mixed.txt", "sacct_mixed.txt"])
def test_rows_built_without_validation_equal_validated_ones(name: str) -> None:
    """The parsers build JobInfo.from_scheduler: the same model validation would give."""
    parser = parse.parse_squeue if name.startswith("squeue") else parse.parse_sacct
    infos = parser((DATA / name).read_text())
    assert infos
    for info in infos:
        validated = JobInfo.model_validate(info.model_dump())
        assert validated == info
        assert validated.model_dump() == info.model_dump()
        assert hash(validated) == hash(info)
        assert repr(validated) == repr(info)


def test_from_scheduler_keeps_the_model_frozen_and_copyable() -> None:
    info = JobInfo.from_scheduler("12", JobState.PENDING, "PENDING", reason="JobHeldUser")
    assert info == JobInfo(
        job_id="12", state=JobState.PENDING, raw_state="PENDING", reason="JobHeldUser"
    )
    assert info.held
    with pytest.raises(ValidationError):
        info.job_id = "13"  # type: ignore[misc]
    assert info.model_copy(update={"exit_code": 3}).exit_code == 3
    assert info.exit_code is None


def test_squeue_rows_can_be_limited_to_the_ids_wanted() -> None:
    """A listing of all the user's jobs keeps the rows asked for: a job, an array task, or
    every task of an array asked for as a whole."""
    stdout = (DATA / "squeue_mixed.txt").read_text()
    assert set(by_id(parse.parse_squeue(stdout, {"1067", "1069"}))) == {
        "1067",
        "1069_1",
        "1069_2",
        "1069_3",
    }
    assert set(by_id(parse.parse_squeue(stdout, {"1069_3", "999"}))) == {"1069_3"}
    assert parse.parse_squeue(stdout, set()) == []


def test_padded_squeue_fields_are_stripped() -> None:
    """Fields are stripped as before when a line holds spaces or non-ASCII text."""
    row = cli.FIELD_SEPARATOR.join(
        [
            " 5",
            "5",
            "N/A",
            " my job ",
            "PENDING",
            "JobHeldUser ",
            "",
            "debug",
            "physics",
            "2026-11-23T13:20:10",
            "N/A",
            "N/A",
            "(null)",
        ]
    )
    (info,) = parse.parse_squeue(row + "\n")
    assert (info.job_id, info.name, info.reason) == ("5", "my job", "JobHeldUser")
    assert info.held
