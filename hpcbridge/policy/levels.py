"""Moving queued jobs between priority levels and recording each move in the ledger: the
one way a campaign's rerank and a project's deadline change the scheduler's knobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger


@dataclass(frozen=True)
class LevelChange:
    """One queued job moved from one level to another (old None: it had none known), by a
    ``rerank`` (with its campaign and scenario) or a ``deadline`` (with its account)."""

    job_id: str
    old_level: str | None
    new_level: str
    reason: str
    cause: str
    campaign: str | None = None
    scenario: str | None = None
    account: str | None = None


def apply_changes(
    cluster: Cluster, ledger: Ledger, changes: Sequence[LevelChange], *, now: datetime
) -> list[LevelChange]:
    """One ``set_priority`` call per level, highest first (the jobs that matter most move
    first); the changes made are recorded even when a later call fails."""
    from sqlalchemy import insert

    from hpcbridge.ledger.schema import PriorityChange
    from hpcbridge.policy.budget import submitting_user

    site = cluster.site
    by_level: dict[str, list[LevelChange]] = {}
    for change in changes:
        by_level.setdefault(change.new_level, []).append(change)
    done: list[LevelChange] = []
    try:
        for level in reversed(list(site.priorities.levels)):
            if level in by_level:
                cluster.set_priority([change.job_id for change in by_level[level]], level)
                done += by_level[level]
    finally:
        if done:
            who = submitting_user(site)
            cluster_name = site.cluster_name or site.name
            rows = [
                {"changed_at": now, "changed_by": who, "cluster": cluster_name, **asdict(change)}
                for change in done
            ]
            with ledger.transaction() as connection:
                connection.execute(insert(PriorityChange), rows)
    return done


def recorded_changes(
    ledger: Ledger, cluster: str, job_ids: Sequence[str]
) -> list[tuple[str, str, str | None, str]]:
    """The recorded moves of these jobs, oldest first: (job, cause, old level, new level)."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import PriorityChange

    if not job_ids:
        return []
    query = (
        select(
            PriorityChange.job_id,
            PriorityChange.cause,
            PriorityChange.old_level,
            PriorityChange.new_level,
        )
        .where(PriorityChange.cluster == cluster, PriorityChange.job_id.in_(job_ids))
        .order_by(PriorityChange.changed_at, PriorityChange.id)
    )
    with ledger.transaction(read_only=True) as connection:
        return [(job, cause, old, new) for job, cause, old, new in connection.execute(query)]
