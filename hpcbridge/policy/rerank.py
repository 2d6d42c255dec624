"""Scenario priority from results: rank a campaign's scenarios by a score and move their
queued jobs between the site's priority levels, recording every move in the ledger.

The best ``top`` scenarios get the site's highest level, the weakest ``bottom`` its lowest,
the rest its default (or, without one, its middle level): a campaign steers the scheduler
through the knobs ``priority set`` uses, it never orders jobs itself. Policy sits below
workflows, so this module takes plain mappings (scenario -> queued job ids, scenario ->
score); hpcbridge.workflows.campaign builds them from a campaign's workflow records.

Speed matters because a rerank follows fresh results: the work is one ledger read (each
job's last recorded level), at most one ``set_priority`` call per level, and one ledger
write, however many scenarios there are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import SpecError

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import PriorityOptions

# A scorer turns a scenario's metric records (oldest first) into its score, or None: no result yet.
Scorer = Callable[[Sequence[Mapping[str, Any]]], float | None]


@dataclass(frozen=True)
class Placement:
    """Where a scenario landed: its rank (None without a score) and the level it gets."""

    scenario: str
    rank: int | None
    score: float | None
    level: str | None  # None: no score, its jobs keep their levels
    reason: str


@dataclass(frozen=True)
class Change:
    """One queued job moved from one level to another (None: the job had no level)."""

    job_id: str
    scenario: str
    old_level: str | None
    new_level: str
    reason: str


@dataclass(frozen=True)
class RerankResult:
    """What a rerank decided and did."""

    campaign: str
    placements: list[Placement]
    changes: list[Change]
    unchanged: list[str]  # queued jobs already at their scenario's level


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metric file, oldest first; none if the file is not there yet.

    A line that is not a JSON object is skipped: a running job may be halfway through
    appending the last one.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SpecError(f"cannot read metric file {path}: {exc.strerror}") from exc
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def last_value(metric: str) -> Scorer:
    """A scorer: the last number the scenario's jobs wrote under ``metric``."""

    def score(records: Sequence[Mapping[str, Any]]) -> float | None:
        for record in reversed(records):
            value = record.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None

    return score


def scores_from_metrics(files: Mapping[str, Path], scorer: Scorer) -> dict[str, float]:
    """Each scenario's score from its metric file; scenarios without one are left out."""
    scores = {}
    for scenario, path in files.items():
        score = scorer(read_metrics(path))
        if score is not None and math.isfinite(score):
            scores[scenario] = score
    return scores


def middle_level(options: PriorityOptions, site: str) -> str:
    """The level of scenarios neither top nor bottom: the site's default, else the middle one
    (the lower of two middles: an unremarkable scenario should not crowd out others)."""
    levels = list(options.levels)
    if not levels:
        raise SpecError(f"site {site} defines no priority levels, so there is nothing to rerank")
    return options.default or levels[(len(levels) - 1) // 2]


def place(
    scenarios: Sequence[str],
    scores: Mapping[str, float],
    levels: Sequence[str],
    middle: str,
    *,
    metric: str = "score",
    minimize: bool = False,
    top: int = 1,
    bottom: int = 1,
) -> list[Placement]:
    """Rank the scored scenarios (ties by name) and give each its level, best first, then
    the unscored ones; ``levels`` lowest first. Top places win where top and bottom meet."""
    if top < 0 or bottom < 0:
        raise SpecError(f"top and bottom must be 0 or more, not {top} and {bottom}")
    scored = [name for name in scenarios if name in scores and math.isfinite(scores[name])]
    sign = 1.0 if minimize else -1.0
    ranked = sorted(scored, key=lambda name: (sign * scores[name], name))
    placements = []
    for rank, name in enumerate(ranked, start=1):
        if rank <= top:
            level = levels[-1]
        elif rank > max(len(ranked) - bottom, top):
            level = levels[0]
        else:
            level = middle
        reason = f"rank {rank} of {len(ranked)} by {metric} = {scores[name]:g}"
        placements.append(Placement(name, rank, scores[name], level, reason))
    placements += [
        Placement(name, None, None, None, f"no {metric} yet")
        for name in scenarios
        if name not in ranked
    ]
    return placements


def rerank(
    cluster: Cluster,
    ledger: Ledger,
    campaign: str,
    queued: Mapping[str, Sequence[str]],
    scores: Mapping[str, float],
    *,
    own_levels: Mapping[str, str | None] | None = None,
    metric: str = "score",
    minimize: bool = False,
    top: int = 1,
    bottom: int = 1,
    now: datetime | None = None,
) -> RerankResult:
    """Move each scenario's queued jobs to its placement's level and record every move.

    ``queued``: every scenario of the campaign -> its jobs still queued (a scenario without
    any still counts in the ranking). A job's current level is its latest recorded change,
    else ``own_levels[job]`` (the level it was submitted at). Only jobs whose level changes
    are touched, with one ``set_priority`` call per level; the changes made are recorded
    even when a later call fails.
    """
    from sqlalchemy import insert

    from hpcbridge.ledger.schema import PriorityChange
    from hpcbridge.policy.budget import submitting_user

    site = cluster.site
    middle = middle_level(site.priorities, site.name)
    levels = list(site.priorities.levels)
    placements = place(
        list(queued) + sorted(set(scores) - set(queued)),
        scores,
        levels,
        middle,
        metric=metric,
        minimize=minimize,
        top=top,
        bottom=bottom,
    )
    cluster_name = site.cluster_name or site.name
    job_ids = [job for jobs in queued.values() for job in jobs]
    current = {**(own_levels or {}), **recorded_levels(ledger, cluster_name, job_ids)}
    wanted: dict[str, list[Change]] = {}
    unchanged = []
    for placement in placements:
        if placement.level is None:
            continue
        for job in queued.get(placement.scenario, ()):
            old = current.get(job)
            if old == placement.level:
                unchanged.append(job)
                continue
            change = Change(job, placement.scenario, old, placement.level, placement.reason)
            wanted.setdefault(placement.level, []).append(change)
    done: list[Change] = []
    moment = now or datetime.now(UTC)
    who = submitting_user(site)
    try:
        for level in reversed(levels):  # the promising scenarios' jobs move first
            if level in wanted:
                cluster.set_priority([change.job_id for change in wanted[level]], level)
                done += wanted[level]
    finally:
        if done:
            rows = [
                {
                    "changed_at": moment,
                    "changed_by": who,
                    "cluster": cluster_name,
                    "job_id": change.job_id,
                    "campaign": campaign,
                    "scenario": change.scenario,
                    "old_level": change.old_level,
                    "new_level": change.new_level,
                    "reason": change.reason,
                }
                for change in done
            ]
            with ledger.transaction() as connection:
                connection.execute(insert(PriorityChange), rows)
    return RerankResult(campaign, placements, done, unchanged)


def recorded_levels(ledger: Ledger, cluster: str, job_ids: Sequence[str]) -> dict[str, str]:
    """Each job's level as the ledger last recorded it (jobs never moved are left out)."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import PriorityChange

    if not job_ids:
        return {}
    query = (
        select(PriorityChange.job_id, PriorityChange.new_level)
        .where(PriorityChange.cluster == cluster, PriorityChange.job_id.in_(job_ids))
        .order_by(PriorityChange.changed_at, PriorityChange.id)
    )
    with ledger.transaction(read_only=True) as connection:
        return {job: level for job, level in connection.execute(query)}
