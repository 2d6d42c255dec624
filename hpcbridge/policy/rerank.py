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
from hpcbridge.policy.levels import LevelChange, apply_changes, recorded_changes

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
class RerankResult:
    """What a rerank decided and did."""

    campaign: str
    placements: list[Placement]
    changes: list[LevelChange]
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
    wanted = []
    unchanged = []
    for placement in placements:
        if placement.level is None:
            continue
        for job in queued.get(placement.scenario, ()):
            old = current.get(job)
            if old == placement.level:
                unchanged.append(job)
                continue
            wanted.append(
                LevelChange(
                    job,
                    old,
                    placement.level,
                    placement.reason,
                    "rerank",
                    campaign=campaign,
                    scenario=placement.scenario,
                )
            )
    done = apply_changes(cluster, ledger, wanted, now=now or datetime.now(UTC))
    return RerankResult(campaign, placements, done, unchanged)


def recorded_levels(ledger: Ledger, cluster: str, job_ids: Sequence[str]) -> dict[str, str]:
    """Each job's level as the ledger last recorded it (jobs never moved are left out)."""
    return {job: new for job, _, _, new in recorded_changes(ledger, cluster, job_ids)}
