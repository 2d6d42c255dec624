"""Reading a job's steps back from the ledger (``hpcbridge ledger steps``).

Steps are written with their attempt by Ledger.upsert_attempts; this finds them by the
attempt's natural key, so a job id names the same steps in every ledger that synced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select

from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import NOT_AN_ARRAY, StepRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.schema import Cluster, JobAttempt, JobStep
from hpcbridge.ledger.store import Ledger


@dataclass(frozen=True)
class RecordedStep:
    """One step as the ledger holds it: under which cluster, job and attempt."""

    cluster: str
    job_id: str
    array_index: int
    attempt: int
    step: StepRecord


def steps_of(ledger: Ledger, job: str, *, cluster: str | None = None) -> list[RecordedStep]:
    """Every recorded step of ``job`` ("123", or "123_4" for an array task), by attempt and
    step number; ``cluster`` is needed only when two clusters' ledgers hold that id.

    A job the ledger does not hold is an error (its steps may simply not be synced yet); a job
    it holds without steps gives an empty list.
    """
    job_id, array_index = _job_key(job)
    where = [JobAttempt.job_id == job_id, JobAttempt.array_index == array_index]
    if cluster is not None:
        where.append(Cluster.name == cluster)
    with ledger.transaction(read_only=True) as connection:
        clusters = sorted(
            connection.scalars(
                select(Cluster.name)
                .distinct()
                .join(JobAttempt, JobAttempt.cluster_id == Cluster.id)
                .where(*where)
            )
        )
        if not clusters:
            on = f" of cluster {cluster}" if cluster is not None else ""
            raise LedgerError(
                f"the ledger holds no job {job}{on}: run `hpcbridge ledger sync` once it has "
                "ended, or check the id"
            )
        if len(clusters) > 1:
            raise LedgerError(
                f"job {job} is in the ledger for clusters {', '.join(clusters)}: "
                "name one with --cluster"
            )
        rows = connection.execute(
            select(JobStep.__table__)
            .join(Cluster, Cluster.id == JobStep.cluster_id)
            .where(
                Cluster.name == clusters[0],
                JobStep.job_id == job_id,
                JobStep.array_index == array_index,
            )
        )
        found = [
            RecordedStep(clusters[0], job_id, array_index, row.attempt, _record(row))
            for row in rows
        ]
    return sorted(found, key=lambda s: (s.attempt, int(s.step.step_id)))


def _job_key(job: str) -> tuple[str, int]:
    """("123", NOT_AN_ARRAY) for "123", ("123", 4) for the array task "123_4"."""
    base, underscore, task = job.partition("_")
    if not base.isdecimal() or (underscore and not task.isdecimal()):
        raise LedgerError(f"job id {job!r} is not a job (123) or an array task (123_4)")
    return base, int(task) if underscore else NOT_AN_ARRAY


def _record(row: Row[Any]) -> StepRecord:
    return StepRecord(
        step_id=row.step_id,
        state=JobState(row.state),
        name=row.name,
        start=row.start_at,
        end=row.end_at,
        elapsed_s=row.elapsed_s,
        exit_code=row.exit_code,
        exit_signal=row.exit_signal,
        node_list=row.node_list,
        alloc_cpus=row.alloc_cpus,
        alloc_gpus=row.alloc_gpus,
        tres=row.tres,
        max_rss_mb=row.max_rss_mb,
        cpu_time_s=row.cpu_time_s,
    )
