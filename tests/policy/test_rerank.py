"""Scenario priority from results without a scheduler: the ranking, the scoring from metric
files, which jobs move with which scontrol call, what the ledger records (SQLite and
PostgreSQL), upgrading a ledger from 0004, finding a campaign's workflow records, and
reranking again when a metric file changes."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, select

from hpcbridge import Cluster
from hpcbridge.errors import SchedulerError, SpecError
from hpcbridge.ledger.schema import PriorityChange
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.rerank import (
    Placement,
    last_value,
    middle_level,
    place,
    read_metrics,
    rerank,
    scores_from_metrics,
)
from hpcbridge.resources import data_dir
from hpcbridge.site import PriorityOptions, SiteConfig
from hpcbridge.transports.fake import FakeTransport
from hpcbridge.workflows.campaign import watch_campaign
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.store import LedgerStore, StateFileStore, WorkflowRecord, WorkflowStore

LEVELS = ["low", "normal", "high"]
SITE = SiteConfig.model_validate(
    {
        "name": "fake-slurm",
        "scheduler": "slurm",
        "cluster_name": "fake",
        "priorities": {
            "levels": {
                "low": {"qos": "normal", "nice": 1000},
                "normal": {"qos": "normal", "nice": 0},
                "high": {"qos": "high", "nice": 0},
            }
        },
    }
)


def levels_of(placements: list[Placement]) -> dict[str, str | None]:
    return {p.scenario: p.level for p in placements}


# ---- ranking -------------------------------------------------------------------------------


def test_best_gets_the_highest_level_weakest_the_lowest_and_the_rest_the_middle() -> None:
    scores = {"a": 0.5, "b": 0.1, "c": 0.9, "d": 0.3}
    placements = place(list(scores), scores, LEVELS, "normal", metric="loss", minimize=True)
    assert [p.scenario for p in placements] == ["b", "d", "a", "c"]
    assert levels_of(placements) == {"b": "high", "d": "normal", "a": "normal", "c": "low"}
    assert placements[0].reason == "rank 1 of 4 by loss = 0.1"
    assert [p.rank for p in placements] == [1, 2, 3, 4]


def test_without_minimize_the_highest_score_wins_and_ties_go_by_name() -> None:
    scores = {"z": 2.0, "y": 2.0, "x": 1.0}
    placements = place(list(scores), scores, LEVELS, "normal")
    assert [p.scenario for p in placements] == ["y", "z", "x"]
    assert levels_of(placements) == {"y": "high", "z": "normal", "x": "low"}


def test_top_and_bottom_counts_and_where_they_meet_the_top_wins() -> None:
    scores = {name: float(index) for index, name in enumerate("abcdef")}
    wide = place(list(scores), scores, LEVELS, "normal", top=2, bottom=3)
    assert levels_of(wide) == {
        "f": "high", "e": "high", "d": "normal", "c": "low", "b": "low", "a": "low"
    }  # fmt: skip
    two = {"a": 1.0, "b": 2.0}
    assert levels_of(place(["a", "b"], two, LEVELS, "normal", top=2, bottom=2)) == {
        "b": "high",
        "a": "high",
    }
    assert levels_of(place(["a"], {"a": 1.0}, LEVELS, "normal")) == {"a": "high"}
    none_moved = place(list(scores), scores, LEVELS, "normal", top=0, bottom=0)
    assert set(levels_of(none_moved).values()) == {"normal"}
    with pytest.raises(SpecError, match="-1"):
        place(["a"], {"a": 1.0}, LEVELS, "normal", top=-1)


def test_scenarios_without_a_score_keep_their_levels_and_come_last() -> None:
    scores = {"a": 1.0, "b": 2.0, "nan": float("nan")}
    placements = place(["late", "a", "nan", "b"], scores, LEVELS, "normal", metric="loss")
    assert [(p.scenario, p.rank, p.level) for p in placements] == [
        ("b", 1, "high"),
        ("a", 2, "low"),
        ("late", None, None),
        ("nan", None, None),
    ]
    assert placements[-1].reason == "no loss yet"


def test_the_middle_level_is_the_sites_default_else_the_lower_middle() -> None:
    four = {"levels": {name: {"nice": 0} for name in ("low", "medium", "high", "critical")}}
    assert middle_level(PriorityOptions.model_validate(four), "s") == "medium"
    assert middle_level(PriorityOptions.model_validate({**four, "default": "low"}), "s") == "low"
    assert middle_level(SITE.priorities, "s") == "normal"
    with pytest.raises(SpecError, match="site s defines no priority levels"):
        middle_level(PriorityOptions(), "s")


# ---- scores from metric files --------------------------------------------------------------


def test_the_score_is_the_last_number_under_the_metric_and_a_half_written_line_is_skipped(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.jsonl"
    lines = [{"loss": 0.9, "step": 1}, {"step": 2}, {"loss": 0.4}, {"loss": True}, [1]]
    good.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"loss": 0.0')
    assert [r.get("step") for r in read_metrics(good)] == [1, 2, None, None]
    assert last_value("loss")(read_metrics(good)) == 0.4
    assert read_metrics(tmp_path / "not-yet.jsonl") == []
    files = {"good": good, "missing": tmp_path / "not-yet.jsonl"}
    assert scores_from_metrics(files, last_value("loss")) == {"good": 0.4}
    # A user's own scoring function sees every record, oldest first.
    assert scores_from_metrics(files, lambda records: float(len(records))) == {
        "good": 4.0,
        "missing": 0.0,
    }


# ---- applying and recording ----------------------------------------------------------------


class Scontrol:
    """A fake Slurm whose scontrol updates are kept; one level may be made to fail."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing
        self.transport = FakeTransport(self.answer)

    def answer(self, argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        if self.failing and any(self.failing in arg for arg in argv):
            return 1, "", "slurm_update error: Invalid qos specification"
        return 0, "", ""

    @property
    def updates(self) -> list[tuple[str, ...]]:
        return [call.argv[2:] for call in self.transport.calls]


def changes(ledger: Ledger) -> list[tuple[str, str, str | None, str, str, str]]:
    query = select(
        PriorityChange.job_id,
        PriorityChange.scenario,
        PriorityChange.old_level,
        PriorityChange.new_level,
        PriorityChange.campaign,
        PriorityChange.cluster,
    ).order_by(PriorityChange.id)
    with ledger.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


QUEUED = {"a": ["11", "12"], "b": ["21"], "c": ["31"], "done": []}


def test_a_rerank_moves_only_jobs_whose_level_changes_with_one_call_per_level(
    ledger: Ledger,
) -> None:
    slurm = Scontrol()
    cluster = Cluster(SITE, transport=slurm.transport)
    scores = {"a": 0.2, "b": 0.5, "c": 0.9, "done": 0.7}
    own = {"11": "normal", "12": "normal", "21": None, "31": "normal"}
    result = rerank(
        cluster, ledger, "sweep", QUEUED, scores, own_levels=own, metric="loss", minimize=True
    )
    # done ranks 3rd of 4, so b is 2nd (normal), c last (low); a is at the top.
    assert slurm.updates == [
        ("JobId=11,12", "QOS=high", "Nice=0"),
        ("JobId=21", "QOS=normal", "Nice=0"),
        ("JobId=31", "QOS=normal", "Nice=1000"),
    ]
    assert result.unchanged == []
    assert changes(ledger) == [
        ("11", "a", "normal", "high", "sweep", "fake"),
        ("12", "a", "normal", "high", "sweep", "fake"),
        ("21", "b", None, "normal", "sweep", "fake"),
        ("31", "c", "normal", "low", "sweep", "fake"),
    ]
    with ledger.engine.connect() as connection:
        query = select(PriorityChange.reason, PriorityChange.changed_by, PriorityChange.changed_at)
        reason, by, at = connection.execute(query.order_by(PriorityChange.id).limit(1)).one()
    assert reason == "rank 1 of 4 by loss = 0.2"
    assert by == getpass.getuser()
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)

    # The same scores again: the ledger says every job is in place, nothing is called.
    again = rerank(cluster, ledger, "sweep", QUEUED, scores, own_levels=own, minimize=True)
    assert slurm.updates[3:] == []
    assert sorted(again.unchanged) == ["11", "12", "21", "31"]
    assert len(changes(ledger)) == 4

    # c improves past a: c rises from the level last recorded, a falls to the middle, b stays.
    better = {**scores, "c": 0.1}
    rerank(cluster, ledger, "sweep", QUEUED, better, own_levels=own, minimize=True)
    assert slurm.updates[3:] == [
        ("JobId=31", "QOS=high", "Nice=0"),
        ("JobId=11,12", "QOS=normal", "Nice=0"),
    ]
    assert changes(ledger)[4:] == [
        ("31", "c", "low", "high", "sweep", "fake"),
        ("11", "a", "high", "normal", "sweep", "fake"),
        ("12", "a", "high", "normal", "sweep", "fake"),
    ]


def test_changes_made_before_a_failing_call_are_recorded(ledger: Ledger) -> None:
    slurm = Scontrol(failing="Nice=1000")
    cluster = Cluster(SITE, transport=slurm.transport)
    with pytest.raises(SchedulerError, match="Invalid qos"):
        rerank(cluster, ledger, "sweep", QUEUED, {"a": 1.0, "b": 2.0, "c": 3.0})
    assert [(job, new) for job, _, _, new, _, _ in changes(ledger)] == [
        ("31", "high"),
        ("21", "normal"),
    ]


def test_a_site_without_levels_is_refused_before_any_call(ledger: Ledger) -> None:
    slurm = Scontrol()
    bare = SITE.model_copy(update={"priorities": PriorityOptions()})
    with pytest.raises(SpecError, match="defines no priority levels"):
        rerank(Cluster(bare, transport=slurm.transport), ledger, "sweep", QUEUED, {"a": 1.0})
    assert slurm.updates == []


def test_a_ledger_at_0004_is_upgraded_with_the_priority_changes_table(ledger_url: str) -> None:
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(data_dir("accounting") / "migrations"))
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
    finally:
        engine.dispose()
    with Ledger.open(ledger_url) as ledger:
        slurm = Scontrol()
        rerank(Cluster(SITE, transport=slurm.transport), ledger, "old", {"a": ["1"]}, {"a": 1})
        assert changes(ledger) == [("1", "a", None, "high", "old", "fake")]


# ---- campaigns in the workflow stores ------------------------------------------------------


def scenario_record(name: str, campaign: str | None, created: datetime) -> WorkflowRecord:
    data: dict[str, object] = {"name": name, "stages": [{"name": "run", "command": "true"}]}
    if campaign is not None:
        data["campaign"] = {"name": campaign, "scenario": name, "metrics": f"/m/{name}.jsonl"}
    record = WorkflowRecord.new(Workflow.parse(data), "test-slurm")
    return record.model_copy(update={"created": created})


@pytest.fixture(params=["state files", "ledger"])
def store(request: pytest.FixtureRequest, tmp_path: Path, ledger: Ledger) -> WorkflowStore:
    if request.param == "ledger":
        return LedgerStore(ledger)
    return StateFileStore(tmp_path / "workflows")


def test_a_store_lists_the_records_of_one_campaign_oldest_first(store: WorkflowStore) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        scenario_record("late", "sweep", start + timedelta(hours=2)),
        scenario_record("early", "sweep", start),
        scenario_record("other", "sweep-2", start),
        scenario_record("untagged", None, start),
    ]
    for record in records:
        store.save(record)
    found = store.campaign("sweep")
    assert [record.workflow.name for record in found] == ["early", "late"]
    assert found[0].workflow.campaign is not None
    assert found[0].workflow.campaign.metrics == Path("/m/early.jsonl")
    assert store.campaign("nothing") == []


def test_a_campaign_tag_is_validated_and_reaches_each_stages_environment() -> None:
    with pytest.raises(SpecError, match=r"campaign\.metrics: 'm\.jsonl' must be an absolute"):
        Workflow.parse(
            {
                "name": "w",
                "stages": [{"name": "run", "command": "true"}],
                "campaign": {"name": "c", "scenario": "s", "metrics": "m.jsonl"},
            }
        )
    workflow = Workflow.parse(
        {
            "name": "w",
            "stages": [{"name": "run", "command": "true", "env": {"A": "1"}}],
            "campaign": {"name": "c", "scenario": "s", "metrics": "/r/m.jsonl"},
        }
    )
    assert workflow.stage_env(workflow.stage("run")) == {
        "A": "1",
        "HPCBRIDGE_METRICS_FILE": "/r/m.jsonl",
        "HPCBRIDGE_CAMPAIGN": "c",
        "HPCBRIDGE_SCENARIO": "s",
    }


def test_watching_a_campaign_reranks_when_a_metric_file_changes(
    tmp_path: Path, ledger: Ledger
) -> None:
    store = StateFileStore(tmp_path / "workflows")
    for name in ("early", "late"):
        data = {
            "name": name,
            "stages": [{"name": "run", "command": "true"}],
            "campaign": {"name": "sweep", "scenario": name, "metrics": str(tmp_path / name)},
        }
        store.save(WorkflowRecord.new(Workflow.parse(data), "test-slurm"))
    cluster = Cluster(SITE, transport=Scontrol().transport)
    passes = watch_campaign(
        cluster, store, ledger, "sweep", interval=0.01, metric="loss", minimize=True
    )

    def ranked() -> dict[str, int | None]:
        return {p.scenario: p.rank for p in next(passes).placements}

    assert ranked() == {"early": None, "late": None}  # at once, before any result
    (tmp_path / "late").write_text('{"loss": 0.5}\n')
    assert ranked() == {"late": 1, "early": None}
    (tmp_path / "early").write_text('{"loss": 0.2}\n')
    assert ranked() == {"early": 1, "late": 2}
    with (tmp_path / "late").open("a") as metrics:
        metrics.write('{"loss": 0.1}\n')
    assert ranked() == {"late": 1, "early": 2}
