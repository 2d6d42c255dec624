"""What became of a job, shared by every scheduler: JobState and JobInfo.

Kept apart from the spec so parsers of scheduler output need only these small models.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class JobState(enum.StrEnum):
    """Scheduler-neutral job states; each backend maps its codes here through a cited table."""

    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True once the job will not run again without a requeue."""
        return self in _TERMINAL_STATES


_TERMINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
        JobState.REVOKED,
    }
)


class JobInfo(BaseModel):
    """What the scheduler says about one job (or one array task) right now."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    state: JobState
    raw_state: str = ""
    name: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    nodes: str | None = None
    partition: str | None = None
    account: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    array_job_id: str | None = None
    array_task_id: int | None = None
    restarts: int = 0

    @property
    def held(self) -> bool:
        """Pending because a user or administrator holds it."""
        return self.state is JobState.PENDING and (self.reason or "").startswith("JobHeld")

    @property
    def elapsed_seconds(self) -> float | None:
        """Run time so far, or in total once finished."""
        if self.start_time is None:
            return None
        end = self.end_time or datetime.now(self.start_time.tzinfo)
        return max(0.0, (end - self.start_time).total_seconds())
