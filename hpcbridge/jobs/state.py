"""What became of a job, shared by every scheduler: JobState and JobInfo.

Kept apart from the spec so parsers of scheduler output need only these small models.
JobState itself lives in jobs/lifecycle.py, without pydantic, so that the facade
(``from hpcbridge import Cluster``) imports without it; it is the same class here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from hpcbridge.jobs.lifecycle import JobState

__all__ = ["JobInfo", "JobState"]


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

    @classmethod
    def from_scheduler(
        cls,
        job_id: str,
        state: JobState,
        raw_state: str,
        *,
        name: str | None = None,
        reason: str | None = None,
        exit_code: int | None = None,
        exit_signal: int | None = None,
        nodes: str | None = None,
        partition: str | None = None,
        account: str | None = None,
        submit_time: datetime | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        array_job_id: str | None = None,
        array_task_id: int | None = None,
    ) -> JobInfo:
        """A JobInfo from values a parser already typed (scheduler output), not validated again.

        Equal to ``JobInfo(...)`` with the same arguments; about a third of the cost, which
        shows when one squeue answer holds thousands of jobs (``model_construct`` is slower
        than validating). The parameters are typed, so mypy checks what parsers pass.
        """
        info = _new(cls)
        _set(
            info,
            "__dict__",
            {
                "job_id": job_id,
                "state": state,
                "raw_state": raw_state,
                "name": name,
                "reason": reason,
                "exit_code": exit_code,
                "exit_signal": exit_signal,
                "nodes": nodes,
                "partition": partition,
                "account": account,
                "submit_time": submit_time,
                "start_time": start_time,
                "end_time": end_time,
                "array_job_id": array_job_id,
                "array_task_id": array_task_id,
                "restarts": 0,
            },
        )
        _set(info, "__pydantic_fields_set__", set(_SCHEDULER_FIELDS))
        _set(info, "__pydantic_extra__", None)
        _set(info, "__pydantic_private__", None)
        return info

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


_new = object.__new__
_set = object.__setattr__
# What from_scheduler marks as given (model_fields_set): every field but restarts.
_SCHEDULER_FIELDS = tuple(name for name in JobInfo.model_fields if name != "restarts")
