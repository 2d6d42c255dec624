"""The deadline estimate without a scheduler's queue: run times from the ledger's finished
runs (the longest of the last runs as the bound), waits from the ledger's recent waits of
jobs of the same partition and size, the critical path of a workflow, and the verdict with
its margin and suggested level."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import pytest

from hpcbridge import Cluster, JobSpec
from hpcbridge.errors import DeadlineInfeasible
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.feasibility import check_deadline, decide
from hpcbridge.site import SiteConfig

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
SITE = SiteConfig.model_validate(
    {
        "name": "plan",
        "scheduler": "local",
        "cluster_name": "plan",
        "priorities": {"levels": {"low": {"nice": 10}, "normal": {"nice": 0}, "high": {}}},
    }
)
HOUR = 3600


def attempt(job: str, *, name: str, start: datetime, run_s: int, wait_s: int) -> AttemptRecord:
    return AttemptRecord(
        job_id=job,
        attempt=1,
        state=JobState.COMPLETED,
        user=getpass.getuser(),
        account="physics",
        name=name,
        partition="batch",
        submit=start - timedelta(seconds=wait_s),
        start=start,
        end=start + timedelta(seconds=run_s),
        elapsed_s=run_s,
        alloc_cpus=4,
        req_walltime_s=4 * HOUR,
    )


@pytest.fixture
def history(ledger: Ledger) -> Ledger:
    """Three runs of "sim" (1, 1.5 and 2 h of a 4 h request) and ten 4-core waits of 10 to
    100 minutes in partition batch, all in the last days."""
    runs = [
        attempt(f"{index}", name="sim", start=NOW - timedelta(days=3 - index), run_s=run, wait_s=60)
        for index, run in enumerate((HOUR, 3 * HOUR // 2, 2 * HOUR))
    ]
    waits = [
        attempt(f"w{m}", name="other", start=NOW - timedelta(hours=m), run_s=60, wait_s=m * 600)
        for m in range(1, 11)
    ]
    ledger.upsert_attempts("plan", "local", runs + waits, source="test")
    return ledger


def spec(name: str, **extra: object) -> JobSpec:
    data = {"name": name, "command": "true", "partition": "batch"}
    data["resources"] = {"ntasks": 4, "walltime": "04:00:00"}
    return JobSpec.parse({**data, **extra})


def test_a_workflows_finish_follows_its_critical_path(history: Ledger) -> None:
    cluster = Cluster(SITE)
    stages = [spec("sim"), spec("post"), spec("other")]
    parents = {"post": ["sim"], "other": []}
    result = check_deadline(cluster, history, stages, parents, NOW + timedelta(days=2), now=NOW)
    sim, post, other = result.stages
    # Same job: the median of its last runs (1.5 h), the longest (2 h) the bound.
    assert (sim.run_s, sim.run_high_s) == (3 * HOUR // 2, 2 * HOUR)
    assert sim.run_basis.startswith("same job")
    # Waits of 4-core jobs in batch: three of 1 min, ten of 10..100 min: median 40, 80th
    # percentile 80 min.
    assert (sim.wait_s, sim.wait_high_s) == (40 * 60, 80 * 60)
    assert sim.wait_basis == "median of 13 waits in the last 30 days (partition batch, 2-8 cores)"
    assert post.start == sim.finish + timedelta(seconds=post.wait_s)
    assert other.start == NOW + timedelta(seconds=other.wait_s)  # waits on nothing
    assert result.critical_path == ["sim", "post"]
    assert result.finish == post.finish
    assert result.verdict == "likely"


def test_verdicts_at_risk_with_a_level_to_raise_to_and_infeasible(history: Ledger) -> None:
    cluster = Cluster(SITE)
    one = [spec("sim")]
    # Expected: 40 min wait + 1.5 h = 2:10; bound 80 min + 2 h = 3:20; with a 3.5 h deadline
    # the margin is 21 min, and 3:41 misses.
    at_risk = check_deadline(cluster, history, one, {}, NOW + timedelta(hours=3.5), now=NOW)
    assert at_risk.verdict == "at risk"
    assert at_risk.suggested_level == "high"  # one above the middle level, normal
    assert at_risk.margin_s == 21 * 60
    top = check_deadline(
        cluster, history, [spec("sim", priority="high")], {}, NOW + timedelta(hours=3.5), now=NOW
    )
    assert (top.verdict, top.suggested_level) == ("at risk", None)  # already at the top
    assert top.stages[0].level == "high"
    likely = check_deadline(cluster, history, one, {}, NOW + timedelta(hours=5), now=NOW)
    assert likely.verdict == "likely"
    never = check_deadline(cluster, history, one, {}, NOW + timedelta(hours=1), now=NOW)
    assert never.verdict == "infeasible"
    assert "even with no queue wait the predicted run ends 2026-12-03 13:30 UTC" in never.reason

    with pytest.raises(DeadlineInfeasible, match=r"infeasible.*submit with --force"):
        decide(never, "job sim", force=False, on_risk="warn")
    assert decide(never, "job sim", force=True, on_risk="warn")[0] is None
    level, line = decide(at_risk, "job sim", force=False, on_risk="raise")
    assert level == at_risk.suggested_level
    assert line.endswith(f"submitted at {level}")
    assert decide(at_risk, "job sim", force=False, on_risk="warn")[0] is None


def test_without_history_the_request_bounds_the_run_and_no_wait_is_assumed(
    ledger: Ledger,
) -> None:
    result = check_deadline(
        Cluster(SITE), ledger, [spec("new")], {}, NOW + timedelta(days=1), now=NOW
    )
    [stage] = result.stages
    assert (stage.run_s, stage.run_high_s) == (2 * HOUR, 4 * HOUR)  # half the request; all of it
    assert (stage.wait_s, stage.wait_basis) == (0, "no recent waits in the ledger: none assumed")
