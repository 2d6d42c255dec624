"""Ledger rows as the bulk writers bind them: an attempt's and a step's columns as tuples in
their tables' column order, times as epoch seconds (aware datetimes only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import AttemptRecord, StepRecord
from hpcbridge.ledger.schema import JobAttempt, JobStep

NATURAL_KEY = ("cluster_id", "job_id", "array_index", "attempt")
# The table's column order, which is the upsert's bind order: what a batch shares comes first
# (cluster_id, source, updated_at), then what attempt_values gives for each attempt.
ATTEMPT_COLUMNS = tuple(c.name for c in JobAttempt.__table__.columns if c.name != "id")
START, END = ATTEMPT_COLUMNS.index("start_at"), ATTEMPT_COLUMNS.index("end_at")
JOB_ID = ATTEMPT_COLUMNS.index("job_id")
STEP_KEY = ("cluster_id", "job_id", "array_index", "attempt", "step_id")
# The step table's column order, the step upsert's bind order: cluster_id, then what
# step_values gives.
STEP_COLUMNS = tuple(c.name for c in JobStep.__table__.columns)


def attempt_values(
    record: AttemptRecord, users: dict[str, int], accounts: dict[str, int]
) -> tuple[Any, ...]:
    """An attempt's own columns, in ATTEMPT_COLUMNS order after the batch's; times in seconds."""
    return (
        record.job_id,
        record.array_index,
        record.attempt,
        record.name,
        users.get(record.user) if record.user else None,
        accounts.get(record.account) if record.account else None,
        record.partition,
        record.qos,
        epoch(record.submit),
        epoch(record.eligible),
        epoch(record.start),
        epoch(record.end),
        record.elapsed_s,
        record.state.value,
        record.exit_code,
        record.exit_signal,
        record.reason,
        record.node_list,
        record.node_count,
        record.alloc_cpus,
        record.alloc_gpus,
        record.tres,
        record.req_walltime_s,
        record.req_mem_mb,
        record.max_rss_mb,
        record.cpu_time_s,
    )


def step_values(record: AttemptRecord, step: StepRecord, updated_at: int) -> tuple[Any, ...]:
    """A step's columns in STEP_COLUMNS order after cluster_id; times in seconds."""
    return (
        record.job_id,
        record.array_index,
        record.attempt,
        step.step_id,
        updated_at,
        step.name,
        step.state.value,
        step.exit_code,
        step.exit_signal,
        epoch(step.start),
        epoch(step.end),
        step.elapsed_s,
        step.node_list,
        step.alloc_cpus,
        step.alloc_gpus,
        step.tres,
        step.max_rss_mb,
        step.cpu_time_s,
    )


def culprit(batch: Sequence[AttemptRecord], users: dict[str, int], accounts: dict[str, int]) -> str:
    """Which record of a batch could not be written (looked for only once one could not)."""
    for record in batch:
        try:
            attempt_values(record, users, accounts)
        except LedgerError:
            return f"job {record.job_id} attempt {record.attempt}"
    return "a record"  # pragma: no cover - called only after one record failed


def epoch(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # .timestamp() would silently read it as local time
        raise LedgerError(f"ledger times must be timezone-aware, got {moment.isoformat()}")
    return int(moment.timestamp())
