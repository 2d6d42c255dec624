"""One job attempt as every source delivers it (sacct, PBS logs, qstat -x, SWF traces), and
the job steps of an attempt where the source has them (sacct).

Sources turn their own formats into AttemptRecord; the ledger stores AttemptRecord. A plain
slotted dataclass rather than a pydantic model, and not frozen: ingest handles hundreds of
thousands of rows per second, a frozen dataclass costs ten times as much to build (3.8 us
against 0.4 us), and validation happened where the text was parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hpcbridge.jobs.state import JobState

NOT_AN_ARRAY = -1
"""``array_index`` of a job that is not an array task; the natural key needs a non-NULL value
because SQL unique constraints treat NULLs as distinct."""


@dataclass(slots=True)
class AttemptRecord:
    """One run of one job (or array task), or a job that ended before it ever ran.

    The natural key is (job_id, array_index, attempt) within a cluster; attempts count from 1
    in time order, so a job requeued twice has attempts 1, 2 and 3. Times are timezone-aware
    UTC. Durations are seconds, memory is megabytes. None means the source does not say.
    """

    job_id: str
    attempt: int
    state: JobState
    array_index: int = NOT_AN_ARRAY
    name: str | None = None
    user: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    submit: datetime | None = None
    eligible: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_s: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str | None = None
    node_list: str | None = None
    node_count: int | None = None
    alloc_cpus: int | None = None
    alloc_gpus: int | None = None
    tres: str | None = None
    req_walltime_s: int | None = None
    req_mem_mb: int | None = None
    max_rss_mb: float | None = None
    cpu_time_s: float | None = None
    steps: tuple[StepRecord, ...] = ()  # sacct's numbered steps; other sources have none


@dataclass(slots=True)
class StepRecord:
    """One job step of an attempt (``srun`` inside a job: sacct's ``123.0``, ``123.1`` ...).

    Its natural key is its attempt's plus ``step_id``; fields as in AttemptRecord.
    """

    step_id: str
    state: JobState
    name: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_s: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    node_list: str | None = None
    alloc_cpus: int | None = None
    alloc_gpus: int | None = None
    tres: str | None = None
    max_rss_mb: float | None = None
    cpu_time_s: float | None = None
