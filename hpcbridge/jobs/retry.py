"""When and how a job is submitted again after it ended (its spec's ``retry``): the one rule
``Cluster.wait(retry=True)`` and ``workflow resume`` share.

The n-th retry waits ``backoff x factor^(n-1)`` seconds after the failed run ended (a node
that just failed is often still failing), and after OUT_OF_MEMORY asks for
``memory_factor`` times the memory (rounded up to a whole megabyte). A job with no memory
request gets none: there is nothing to raise, which the reason says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobState


@dataclass(frozen=True)
class RetryPlan:
    """The next attempt: its spec, how long after the last run ended, and why."""

    spec: JobSpec
    delay_s: float
    reason: str


def retry_after(spec: JobSpec, state: JobState, runs: int) -> RetryPlan | None:
    """The next attempt of ``spec`` after a run that ended ``state``, ``runs`` runs so far;
    None when it is not to be retried (no retry, another ending, attempts used up)."""
    policy = spec.retry
    if policy is None or state.value not in policy.on or runs > policy.attempts:
        return None
    delay = policy.backoff * policy.factor ** (runs - 1)
    reason = f"{state.value}: attempt {runs + 1} of {policy.attempts + 1} after {delay:g} s"
    if state is not JobState.OUT_OF_MEMORY:
        return RetryPlan(spec, delay, reason)
    memory = spec.resources.memory
    if memory is None:
        return RetryPlan(spec, delay, f"{reason} (no memory request to raise)")
    raised = math.ceil(memory * policy.memory_factor)
    resources = spec.resources.model_copy(update={"memory": raised})
    return RetryPlan(
        spec.model_copy(update={"resources": resources}),
        delay,
        f"{reason}, memory {memory}M -> {raised}M",
    )
