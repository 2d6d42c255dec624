"""The monthly usage rollup, on SQLite and PostgreSQL: after every kind of write it equals the
rollup worked out here from the attempts alone, and reports read from it equal reports read
from the attempts (the path a ledger with dirty months takes).

The expected rollup is computed in Python from the definition (cpus x the charged seconds,
elapsed_s or else end - start, shared between months in proportion to the seconds of
[start, end) inside each, the charge up to each month's end rounded down; jobs, waits and
CPU efficiency in the month of start), not by the code under test.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, delete, func, insert, select

from hpcbridge import JobState
from hpcbridge.errors import SchedulerUnavailable
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.rollup import touched_months
from hpcbridge.ledger.schema import Cluster, JobAttempt, UsageDirty, UsageMonthly
from hpcbridge.ledger.sources.base import Window, spans
from hpcbridge.ledger.sources.swf import SwfTrace, import_swf
from hpcbridge.ledger.store import BATCH_SIZE, Ledger
from hpcbridge.ledger.sync import sync
from hpcbridge.ledger.usage import UsageReport, usage_report
from hpcbridge.resources import data_dir

STATES = [JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED]
HPCBRIDGE = str(Path(sys.executable).with_name("hpcbridge"))
ORIGIN = datetime(2023, 11, 20, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(moment: datetime) -> datetime:
    return (month_start(moment) + timedelta(days=32)).replace(day=1)


def random_attempts(count: int, seed: int, prefix: str = "") -> list[AttemptRecord]:
    """Attempts on and off month boundaries, zero-length, long, running, without CPUs."""
    rng = random.Random(seed)
    boundaries = [datetime(2024, month, 1, tzinfo=UTC) for month in range(1, 6)]
    records = []
    for index in range(count):
        start = rng.choice(
            [ORIGIN + timedelta(seconds=rng.randrange(150 * 86400)), rng.choice(boundaries)]
        )
        length = rng.choice([0, rng.randrange(7200), rng.randrange(70 * 86400)])
        # The scheduler's charge: none, the length, or a few seconds (or a day) less or more.
        charged = rng.choice([None, length, max(0, length - rng.randrange(3)), length + 86400])
        running = index % 13 == 0
        records.append(
            AttemptRecord(
                job_id=f"{prefix}{index}",
                attempt=1 + index % 2,
                state=JobState.RUNNING if running else rng.choice(STATES),
                user=f"u{index % 5}",
                account=rng.choice(["physics", "chemistry", None]),
                partition=rng.choice(["batch", "gpu", None]),
                submit=rng.choice([None, start - timedelta(seconds=rng.randrange(3600))]),
                start=start,
                end=None if running else start + timedelta(seconds=length),
                elapsed_s=charged,
                alloc_cpus=rng.choice([None, 0, 1, 8]),
                alloc_gpus=rng.choice([None, 0, 2]),
                cpu_time_s=rng.choice([None, rng.uniform(0, 5000)]),
            )
        )
    return records


Row = tuple[Any, ...]
SUMS = ("core_seconds", "gpu_seconds", "jobs", "wait_s", "waited_jobs", "cpu_used_s")


def rollup_rows(ledger: Ledger) -> dict[Row, list[float]]:
    """The rollup as {(cluster, month, account, user, partition, state): sums}."""
    table = UsageMonthly.__table__.c
    keys = (table.cluster_id, table.month, table.account_id, table.user_id, table.partition)
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            select(*keys, table.state, *(table[name] for name in SUMS), table.cpu_available_s)
        ).all()
    found: dict[Row, list[float]] = {}
    for row in rows:
        assert tuple(row[:6]) not in found, f"two rollup rows for {row[:6]}"
        found[tuple(row[:6])] = [float(value) for value in row[6:]]
    return found


def expected_rollup(ledger: Ledger) -> dict[Row, list[float]]:
    """The rollup by its definition, from the finished attempts."""
    a = JobAttempt
    with ledger.engine.connect() as connection:
        attempts = connection.execute(
            select(
                a.cluster_id, a.account_id, a.user_id, a.partition, a.state, a.start_at,
                a.end_at, a.submit_at, a.alloc_cpus, a.alloc_gpus, a.cpu_time_s, a.elapsed_s,
            ).where(a.end_at.is_not(None), a.start_at.is_not(None))
        ).all()  # fmt: skip
    expected: dict[Row, list[float]] = {}
    for (
        cluster, account, user, partition, state, start, end, submit, cpus, gpus, used, elapsed
    ) in attempts:  # fmt: skip
        if end < start:
            continue
        charged = int((end - start).total_seconds()) if elapsed is None else elapsed
        month = month_start(start)
        while month < end or month == month_start(start):
            following = next_month(month)
            seconds = charged_until(following, start, end, charged) - charged_until(
                month, start, end, charged
            )
            here = month <= start < following
            measured = here and used is not None and (cpus or 0) > 0
            sums = expected.setdefault((cluster, month, account, user, partition, state), [0.0] * 7)
            sums[0] += (cpus or 0) * seconds
            sums[1] += (gpus or 0) * seconds
            sums[2] += here
            sums[3] += (start - submit).total_seconds() if here and submit else 0
            sums[4] += bool(here and submit)
            sums[5] += used if measured else 0
            sums[6] += (cpus or 0) * charged if measured else 0
            month = following
    return expected


def charged_until(moment: datetime, start: datetime, end: datetime, charged: int) -> int:
    """What an attempt charged ``charged`` seconds over [start, end) has used by ``moment``:
    in proportion to the time, rounded down; a zero-length one uses it all at its start."""
    length = int((end - start).total_seconds())
    if length == 0:
        return charged if moment > start else 0
    ran = int((min(max(moment, start), end) - start).total_seconds())
    return charged * ran // length


def assert_rollup_exact(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(UsageDirty)) == 0
    got, expected = rollup_rows(ledger), expected_rollup(ledger)
    assert got.keys() == expected.keys()
    for key, sums in expected.items():
        assert got[key] == pytest.approx(sums, rel=1e-12, abs=1e-6), key


def load(ledger: Ledger, records: list[AttemptRecord], cluster: str = "c1") -> None:
    ledger.upsert_attempts(cluster, "slurm", records, source="test")


def test_touched_months_are_those_of_start_to_the_last_second() -> None:
    jan, feb, mar = (int(datetime(2024, m, 1, tzinfo=UTC).timestamp()) for m in (1, 2, 3))
    assert touched_months([(jan + 10, feb)]) == {jan}  # ends exactly at February
    assert touched_months([(feb, feb)]) == {feb}  # zero-length, on the boundary
    assert touched_months([(jan, mar + 1)]) == {jan, feb, mar}
    assert touched_months([(jan, None), (None, None), (feb, jan)]) == set()


def test_the_rollup_stays_exact_through_repeated_and_changed_upserts(ledger: Ledger) -> None:
    records = random_attempts(400, seed=3)
    load(ledger, records)
    assert_rollup_exact(ledger)
    load(ledger, records)  # the same rows again
    assert_rollup_exact(ledger)
    rng = random.Random(5)
    changed = []
    for record in records:
        assert record.start is not None
        if record.end is None:  # the running attempts end, some in a later month
            end = record.start + timedelta(days=rng.choice([0, 1, 45]))
            changed.append(replace(record, end=end, cpu_time_s=7.0))
        elif rng.random() < 0.2:  # corrected: moved to another month, or cut short
            start = record.start + timedelta(days=rng.choice([-40, 3, 31]))
            changed.append(replace(record, start=start, end=start + timedelta(hours=5)))
        elif rng.random() < 0.1:  # back to running: no longer in the rollup
            changed.append(replace(record, end=None))
        elif rng.random() < 0.1:
            changed.append(replace(record, account="biology"))
    assert len(changed) > 60
    load(ledger, changed)
    assert_rollup_exact(ledger)
    load(ledger, random_attempts(50, seed=9), cluster="c2")  # another cluster's months
    assert_rollup_exact(ledger)


def same_report(left: UsageReport, right: UsageReport) -> None:
    assert [row.keys for row in left.rows] == [row.keys for row in right.rows]
    for one, other in zip(left.rows, right.rows, strict=True):
        assert astuple(one.usage) == pytest.approx(astuple(other.usage), rel=1e-9, abs=1e-9)
        assert (one.balance is None) == (other.balance is None)
        if one.balance is not None and other.balance is not None:
            assert astuple(one.balance) == pytest.approx(astuple(other.balance), rel=1e-9)
    assert astuple(left.total) == pytest.approx(astuple(right.total), rel=1e-9, abs=1e-9)


@contextmanager
def scan_only(ledger: Ledger, clusters: list[str]) -> Iterator[None]:
    """Mark a month long past dirty in each cluster: reports then read only the attempts."""
    with ledger.transaction() as connection:
        ids = connection.scalars(select(Cluster.id).where(Cluster.name.in_(clusters))).all()
        connection.execute(
            insert(UsageDirty), [{"cluster_id": i, "month": datetime(1990, 1, 1, tzinfo=UTC)}
                                 for i in ids]
        )  # fmt: skip
    yield
    with ledger.transaction() as connection:
        connection.execute(delete(UsageDirty))


def test_reports_from_the_rollup_equal_reports_from_the_attempts(ledger: Ledger) -> None:
    load(ledger, random_attempts(300, seed=11))
    load(ledger, random_attempts(100, seed=12, prefix="x"), cluster="c2")
    ledger.set_allocation(
        "physics", datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), 9000.0
    )
    rng = random.Random(13)
    cases = []
    for _ in range(14):
        first = ORIGIN + timedelta(seconds=rng.randrange(120 * 86400))
        first = rng.choice([first, month_start(first)])
        last = first + timedelta(seconds=rng.randrange(1, 150 * 86400))
        last = rng.choice([last, next_month(last)])
        by = rng.choice([["account"], ["account", "month"], ["user", "month"], ["state"],
                         ["month", "partition", "account", "user", "state"]])  # fmt: skip
        options = rng.choice([{}, {"cluster": "c2"}, {"account": "physics"}, {"cluster": "c1"}])
        cases.append((by, first, last, options))
    cases.append((["account", "month"], datetime(2024, 1, 1, tzinfo=UTC), NOW, {}))
    from_rollup = [usage_report(ledger, by, a, b, now=NOW, **o) for by, a, b, o in cases]
    with ledger.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(UsageMonthly))
    with scan_only(ledger, ["c1", "c2"]):
        for (by, first, last, options), expected in zip(cases, from_rollup, strict=True):
            same_report(expected, usage_report(ledger, by, first, last, now=NOW, **options))


def interrupted(records: list[AttemptRecord], after: int) -> Iterator[AttemptRecord]:
    yield from records[:after]
    raise KeyboardInterrupt


def test_an_interrupted_write_leaves_dirty_months_that_reports_read_and_the_next_write_fixes(
    ledger: Ledger,
) -> None:
    records = random_attempts(BATCH_SIZE + 600, seed=21)
    report_before = usage_report(ledger, ["account", "month"], ORIGIN, NOW, now=NOW)
    assert report_before.rows == []
    with pytest.raises(KeyboardInterrupt):
        ledger.upsert_attempts("c1", "slurm", interrupted(records, BATCH_SIZE + 10), source="t")
    with ledger.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(UsageDirty))
        written = connection.scalar(select(func.count()).select_from(JobAttempt))
    assert written == BATCH_SIZE  # the first batch was committed, with its dirty months
    partial = usage_report(ledger, ["account", "month"], ORIGIN, NOW, now=NOW)
    assert partial.total.jobs == BATCH_SIZE
    load(ledger, records)
    assert_rollup_exact(ledger)
    assert usage_report(ledger, ["account"], ORIGIN, NOW, now=NOW).total.jobs == len(records)


SWF_HEADER = "; Version: 2.2\n; Computer: rollup test\n; UnixStartTime: 1700000000\n"


def swf_trace(path: Path, jobs: int) -> Path:
    """A trace of ``jobs`` jobs over ~6 months; runs of 0 s to 40 days, some cancelled."""
    rng = random.Random(31)
    lines = [SWF_HEADER]
    for number in range(1, jobs + 1):
        submit = rng.randrange(180 * 86400)
        run = rng.choice([0, rng.randrange(3600), rng.randrange(40 * 86400)])
        status = rng.choice([1, 1, 0, 5])
        cpus = rng.choice([1, 4, 32])
        lines.append(
            f"{number} {submit} {rng.randrange(600)} {run} {cpus} {run * cpus * 0.5:.1f} -1 "
            f"{cpus} 86400 -1 {status} {number % 7} {number % 3} -1 1 1 -1 -1\n"
        )
    path.write_text("".join(lines))
    return path


def test_import_swf_keeps_the_rollup_exact(ledger: Ledger, tmp_path: Path) -> None:
    trace = swf_trace(tmp_path / "t.swf", 800)
    assert import_swf(ledger, SwfTrace(trace)) == 800
    assert_rollup_exact(ledger)
    assert import_swf(ledger, SwfTrace(trace)) == 800
    assert_rollup_exact(ledger)


def test_an_import_killed_with_sigkill_leaves_a_right_ledger_and_the_rerun_an_exact_rollup(
    ledger_url: str, tmp_path: Path
) -> None:
    trace = swf_trace(tmp_path / "big.swf", 6 * BATCH_SIZE)
    command_line = [HPCBRIDGE, "ledger", "import-swf", str(trace), "--ledger", ledger_url]
    with Ledger.open(ledger_url) as ledger:
        victim = subprocess.Popen(command_line, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while count_attempts(ledger) < BATCH_SIZE:  # a batch is committed
            assert victim.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert victim.returncode == -signal.SIGKILL
        assert count_attempts(ledger) < 6 * BATCH_SIZE, "killed too late"
        with ledger.engine.connect() as connection:
            dirty = connection.scalar(select(func.count()).select_from(UsageDirty))
        if not dirty:  # killed after a write's own refresh: the rollup must be whole already
            assert_rollup_exact(ledger)
        start, end = datetime(2023, 11, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)
        report = usage_report(ledger, ["month"], start, end, now=NOW)
        assert report.total.jobs == count_attempts(ledger, started=True)
    rerun = subprocess.run(command_line, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    with Ledger.open(ledger_url) as ledger:
        assert count_attempts(ledger) == 6 * BATCH_SIZE
        assert_rollup_exact(ledger)


def count_attempts(ledger: Ledger, *, started: bool = False) -> int:
    query = select(func.count()).select_from(JobAttempt)
    if started:
        query = query.where(JobAttempt.start_at.is_not(None))
    with ledger.engine.connect() as connection:
        return connection.scalar(query) or 0


def upgrade_to(connection: Connection, revision: str) -> None:
    """Bring an empty database to an older schema version, as a ledger made back then."""
    config = Config()
    config.set_main_option("script_location", str(data_dir("accounting") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def test_upgrading_a_ledger_with_attempts_fills_its_rollup(ledger_url: str) -> None:
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as connection:
            upgrade_to(connection, "0002")
            connection.execute(insert(Cluster), [{"id": 1, "name": "old", "scheduler": "pbs"}])
            rows = [
                {"cluster_id": 1, "source": "test", "updated_at": NOW, "job_id": str(index),
                 "array_index": -1, "attempt": 1, "state": "COMPLETED", "start_at": start,
                 "end_at": start + timedelta(days=index % 40), "alloc_cpus": 1 + index % 3}
                for index, start in enumerate(
                    ORIGIN + timedelta(hours=7 * index) for index in range(200)
                )
            ]  # fmt: skip
            connection.execute(insert(JobAttempt), rows)
    finally:
        engine.dispose()
    with Ledger.open(ledger_url) as ledger:
        assert_rollup_exact(ledger)
        assert len(rollup_rows(ledger)) >= 3


class FailingSource:
    """Hourly windows over a day, each with jobs running across its hour; fails at one."""

    name = "sacct"

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.fetched = 0

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        return spans(read_until or now - timedelta(days=1), now, timedelta(hours=1))

    def fetch(self, window: Window) -> list[AttemptRecord]:
        if self.fetched == self.fail_at:
            raise SchedulerUnavailable("sacct: slurmdbd is unavailable")
        self.fetched += 1
        return [
            AttemptRecord(
                f"{window.start:%d%H}-{index}",
                1,
                JobState.COMPLETED,
                user="alice",
                account="physics",
                start=window.start - timedelta(days=index * 20),
                end=window.end,
                alloc_cpus=index + 1,
            )
            for index in range(3)
        ]


def test_a_sync_refreshes_the_rollup_once_at_its_end_even_when_a_source_fails(
    ledger: Ledger,
) -> None:
    now = datetime(2024, 3, 1, 6, tzinfo=UTC)  # the windows cross February into March
    result = sync(ledger, "c1", "slurm", [FailingSource(fail_at=20)], now=lambda: now)
    assert result.outcomes[0].windows_read == 20
    assert_rollup_exact(ledger)
    sync(ledger, "c1", "slurm", [FailingSource(fail_at=99)], now=lambda: now)
    assert_rollup_exact(ledger)


@pytest.fixture(scope="module")
def sync_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test cluster read in 5-minute windows over 6 hours: a sync of ~70 sacct calls,
    slow enough to be killed once some windows with jobs are in."""
    site = tmp_path_factory.mktemp("site") / "site.yaml"
    site.write_text(
        "scheduler: slurm\ncluster_name: hpcbridge\n"
        "ledger: {window: '05:00', overlap: '01:00', first_sync: '06:00:00'}\n"
    )
    return site


@pytest.mark.slurm
def test_a_sync_killed_with_sigkill_keeps_reports_right_and_the_next_one_the_rollup_exact(
    sync_site: Path, ledger_url: str
) -> None:
    command_line = [HPCBRIDGE, "ledger", "sync", "--site", str(sync_site), "--ledger", ledger_url]
    with Ledger.open(ledger_url) as ledger:
        victim = subprocess.Popen(command_line, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while count_attempts(ledger) == 0:  # some windows with jobs are in
            assert victim.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert victim.returncode == -signal.SIGKILL
        with ledger.engine.connect() as connection:
            dirty = connection.scalar(select(func.count()).select_from(UsageDirty))
        # Each window's write ends by refreshing the months it touched; a kill between the
        # two leaves months marked dirty, a kill after leaves the rollup whole. Either way a
        # report now counts what is in the ledger, and the rerun leaves the rollup exact.
        if not dirty:
            assert_rollup_exact(ledger)
        now = datetime.now(UTC)
        first, last = month_start(now - timedelta(days=2)), next_month(now)
        killed = usage_report(ledger, ["account", "month"], first, last, now=now)
        assert killed.total.jobs == count_attempts(ledger, started=True)
    rerun = subprocess.run(command_line, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    with Ledger.open(ledger_url) as ledger:
        assert_rollup_exact(ledger)
        assert rollup_rows(ledger)


def test_upgrading_a_ledger_rolled_up_by_end_minus_start_recomputes_its_rollup(
    ledger_url: str,
) -> None:
    """A ledger at 0003 summed cpus x (end - start); from 0004 usage is cpus x elapsed_s."""
    engine = create_engine(ledger_url)
    start = datetime(2024, 1, 10, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            upgrade_to(connection, "0003")
            connection.execute(insert(Cluster), [{"id": 1, "name": "old", "scheduler": "pbs"}])
            rows = [
                {"cluster_id": 1, "source": "test", "updated_at": NOW, "job_id": str(index),
                 "array_index": -1, "attempt": 1, "state": "COMPLETED",
                 "start_at": start + timedelta(hours=index),
                 "end_at": start + timedelta(hours=index, seconds=61), "elapsed_s": 60,
                 "alloc_cpus": 2}
                for index in range(10)
            ]  # fmt: skip
            connection.execute(insert(JobAttempt), rows)
            stale = {"cluster_id": 1, "month": datetime(2024, 1, 1, tzinfo=UTC),
                     "account_id": None, "user_id": None, "partition": None,
                     "state": "COMPLETED", "core_seconds": 10 * 2 * 61, "gpu_seconds": 0,
                     "jobs": 10, "wait_s": 0, "waited_jobs": 0, "cpu_used_s": 0.0,
                     "cpu_available_s": 0}  # fmt: skip
            connection.execute(insert(UsageMonthly), [stale])
    finally:
        engine.dispose()
    with Ledger.open(ledger_url) as ledger:
        assert_rollup_exact(ledger)
        assert (
            rollup_rows(ledger)[
                (1, datetime(2024, 1, 1, tzinfo=UTC), None, None, None, "COMPLETED")
            ][0]
            == 10 * 2 * 60
        )
