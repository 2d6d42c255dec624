"""A campaign: workflows tagged with one campaign name, each a scenario of it, reranked by
the results their jobs write (hpcbridge.policy.rerank decides and records the moves).

This is where workflow records become the plain mappings the policy takes: each scenario's
queued jobs (the latest job of each stage, from one status call for the whole campaign), the
level each was submitted at, and its metric file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hpcbridge.errors import WorkflowError
from hpcbridge.jobs.state import JobState

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.rerank import RerankResult, Scorer
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore


@dataclass
class Scenario:
    """A scenario's queued jobs, the level each was submitted at, and its metric file."""

    name: str
    metrics: Path
    queued: list[str] = field(default_factory=list)
    own_levels: dict[str, str | None] = field(default_factory=dict)


def campaign_scenarios(cluster: Cluster, records: list[WorkflowRecord]) -> list[Scenario]:
    """The scenarios of these records (a scenario submitted twice gathers both workflows'
    jobs; its newer record names the metric file), from one status call."""
    latest = {
        (record.workflow_id, stage.name): record.latest_job(stage.name)
        for record in records
        for stage in record.workflow.stages
    }
    infos = cluster.status([job for job in latest.values() if job]) if latest else {}
    scenarios: dict[str, Scenario] = {}
    for record in records:
        campaign = record.workflow.campaign
        if campaign is None:
            continue
        scenario = scenarios.setdefault(campaign.scenario, Scenario(campaign.scenario, Path()))
        scenario.metrics = campaign.metrics
        for stage in record.workflow.stages:
            job = latest[record.workflow_id, stage.name]
            info = infos.get(job) if job else None
            if job and info is not None and info.state is JobState.PENDING:
                scenario.queued.append(job)
                scenario.own_levels[job] = cluster.site.prepare(stage).priority
    return list(scenarios.values())


def campaign_records(store: WorkflowStore, campaign: str) -> list[WorkflowRecord]:
    """The campaign's workflow records, oldest first; refused if there are none, or if they
    were submitted to several sites (a rerank moves jobs on one scheduler)."""
    records = store.campaign(campaign)
    if not records:
        raise WorkflowError(f"no workflow is a scenario of campaign {campaign!r}")
    sites = sorted({record.site for record in records})
    if len(sites) > 1:
        raise WorkflowError(
            f"campaign {campaign} has workflows on several sites ({', '.join(sites)}); "
            "a rerank moves jobs on one scheduler"
        )
    return records


def rerank_campaign(
    cluster: Cluster,
    records: list[WorkflowRecord],
    ledger: Ledger,
    campaign: str,
    *,
    metric: str = "score",
    scorer: Scorer | None = None,
    minimize: bool = False,
    top: int = 1,
    bottom: int = 1,
) -> RerankResult:
    """Rank the campaign's scenarios (``records``: campaign_records) and move their queued
    jobs (policy.rerank.rerank).

    Scores are ``scorer`` of each metric file's records (a user's own function), by default
    the last value of ``metric`` there; ``metric`` also names the score in the reasons.
    """
    from hpcbridge.policy.rerank import last_value, rerank, scores_from_metrics

    scenarios = campaign_scenarios(cluster, records)
    files = {scenario.name: scenario.metrics for scenario in scenarios}
    return rerank(
        cluster,
        ledger,
        campaign,
        {scenario.name: scenario.queued for scenario in scenarios},
        scores_from_metrics(files, scorer or last_value(metric)),
        own_levels={job: level for s in scenarios for job, level in s.own_levels.items()},
        metric=metric,
        minimize=minimize,
        top=top,
        bottom=bottom,
    )


def watch_campaign(
    cluster: Cluster,
    store: WorkflowStore,
    ledger: Ledger,
    campaign: str,
    *,
    interval: float = 1.0,
    metric: str = "score",
    scorer: Scorer | None = None,
    minimize: bool = False,
    top: int = 1,
    bottom: int = 1,
) -> Iterator[RerankResult]:
    """Rerank now, then again each time a scenario's metric file changes (or a scenario
    joins), looking every ``interval`` seconds; runs until the caller stops iterating.

    Metric files are polled, not watched with inotify: the jobs writing them run on compute
    nodes, and a shared filesystem tells the login node nothing of their writes.
    """
    seen: tuple[tuple[str, int, int], ...] | None = None
    while True:
        records = campaign_records(store, campaign)
        current = _metric_signature(records)
        if current != seen:
            seen = current
            yield rerank_campaign(
                cluster,
                records,
                ledger,
                campaign,
                metric=metric,
                scorer=scorer,
                minimize=minimize,
                top=top,
                bottom=bottom,
            )
        time.sleep(interval)


def _metric_signature(records: list[WorkflowRecord]) -> tuple[tuple[str, int, int], ...]:
    """Each metric file with its modification time and size (0, 0: not written yet)."""
    found = []
    for record in records:
        if record.workflow.campaign is None:
            continue
        path = record.workflow.campaign.metrics
        try:
            stat = path.stat()
        except FileNotFoundError:
            found.append((str(path), 0, 0))
        else:
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))
