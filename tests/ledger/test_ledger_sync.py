"""Ledger syncs: watermarks, partial failures, locks, and cron safety on the real Slurm.

The bookkeeping tests feed the sync small in-test sources (the sync is what they check); the
cron-safety tests run ``hpcbridge ledger sync`` as separate processes against the real Slurm
accounting, kill one with SIGKILL, run two at once, and compare the ledger with a clean sync.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from filelock import FileLock
from sqlalchemy import create_engine, func, select, text

from hpcbridge import JobState
from hpcbridge.errors import LedgerError, SchedulerUnavailable
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.schema import Account, Cluster, JobAttempt, User
from hpcbridge.ledger.sources.base import Window, spans
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.sync import SyncStatus, cluster_lock, sync

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HPCBRIDGE = str(Path(sys.executable).with_name("hpcbridge"))


class ListSource:
    """Hourly windows over the last ``hours``, one job ending in each; may fail at one."""

    def __init__(self, name: str, hours: int = 4, fail_at: int | None = None) -> None:
        self.name = name
        self.hours = hours
        self.fail_at = fail_at
        self.fetched: list[Window] = []

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        start = read_until or now - timedelta(hours=self.hours)
        windows = spans(start, now, timedelta(hours=1))
        if windows and self.name.endswith("-today"):
            windows[-1] = windows[-1]._replace(complete=False)
        return windows

    def fetch(self, window: Window) -> list[AttemptRecord]:
        if self.fail_at is not None and len(self.fetched) == self.fail_at:
            raise SchedulerUnavailable("sacct: slurmdbd is unavailable")
        self.fetched.append(window)
        job = f"{self.name}-{window.start:%H}"
        return [AttemptRecord(job, 1, JobState.COMPLETED, start=window.start, end=window.end)]


def count(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(JobAttempt)) or 0


def test_a_sync_reads_each_window_once_and_the_next_sync_starts_at_the_watermark(
    ledger: Ledger,
) -> None:
    source = ListSource("sacct")
    first = sync(ledger, "c1", "slurm", [source], now=lambda: NOW)
    assert first.status is SyncStatus.OK
    assert (first.rows, first.outcomes[0].windows_read) == (4, 4)
    assert ledger.read_until("c1", "sacct") == NOW
    later = NOW + timedelta(hours=2)
    second = sync(ledger, "c1", "slurm", [source], now=lambda: later)
    assert [w.start for w in source.fetched[4:]] == [NOW, NOW + timedelta(hours=1)]
    assert second.rows == 2
    assert count(ledger) == 6


def test_a_failing_source_keeps_its_watermark_before_the_failed_window_and_others_go_on(
    ledger: Ledger,
) -> None:
    failing, healthy = ListSource("pbs-log", fail_at=2), ListSource("sacct")
    result = sync(ledger, "c1", "pbs", [failing, healthy], now=lambda: NOW)
    assert result.status is SyncStatus.PARTIAL
    outcome = result.outcomes[0]
    assert (outcome.windows, outcome.windows_read, outcome.rows) == (4, 2, 2)
    assert isinstance(outcome.error, SchedulerUnavailable)
    assert ledger.read_until("c1", "pbs-log") == NOW - timedelta(hours=2)
    assert ledger.read_until("c1", "sacct") == NOW
    retry = sync(ledger, "c1", "pbs", [ListSource("pbs-log")], now=lambda: NOW)
    assert (retry.status, retry.rows) == (SyncStatus.OK, 2)
    assert count(ledger) == 8


def test_a_sync_that_reads_nothing_has_failed(ledger: Ledger) -> None:
    result = sync(ledger, "c1", "slurm", [ListSource("sacct", fail_at=0)], now=lambda: NOW)
    assert result.status is SyncStatus.FAILED
    assert ledger.read_until("c1", "sacct") is None


def test_an_incomplete_window_is_written_but_read_again_next_time(ledger: Ledger) -> None:
    source = ListSource("pbs-today")
    sync(ledger, "c1", "pbs", [source], now=lambda: NOW)
    assert ledger.read_until("c1", "pbs-today") == NOW - timedelta(hours=1)
    assert count(ledger) == 4
    sync(ledger, "c1", "pbs", [source], now=lambda: NOW)
    assert source.fetched[-1].start == NOW - timedelta(hours=1)
    assert count(ledger) == 4


def test_a_broken_ledger_stops_the_sync_with_a_ledger_error(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite'}")
    with ledger.engine.begin() as connection:
        connection.execute(text("DROP TABLE job_attempts"))
    with pytest.raises(LedgerError, match="job_attempts"):
        sync(ledger, "c1", "slurm", [ListSource("sacct")], now=lambda: NOW)
    ledger.close()


def test_a_second_sync_waits_for_the_lock_then_says_who_holds_it(ledger: Ledger) -> None:
    with cluster_lock(ledger, "c1", timeout=1):
        started = time.monotonic()
        with pytest.raises(LedgerError, match="another sync of cluster c1 still holds"):
            sync(ledger, "c1", "slurm", [ListSource("sacct")], lock_timeout=1.0)
        assert time.monotonic() - started >= 1.0
        # another cluster's sync is not held up
        assert sync(ledger, "c2", "slurm", [ListSource("sacct")]).status is SyncStatus.OK
    assert sync(ledger, "c1", "slurm", [ListSource("sacct")]).status is SyncStatus.OK


def test_the_sqlite_lock_is_a_file_beside_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    refused = pytest.raises(LedgerError, match=r"l\.sqlite\.c1\.sync\.lock")
    with Ledger.open(f"sqlite:///{path}") as ledger, FileLock(f"{path}.c1.sync.lock"), refused:
        sync(ledger, "c1", "slurm", [ListSource("sacct")], lock_timeout=0.2)


# ---- cron safety, on the real Slurm accounting ------------------------------------------


@pytest.fixture(scope="module")
def sync_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test cluster read in 30-minute windows over a day: a sync of ~50 sacct calls."""
    site = tmp_path_factory.mktemp("site") / "site.yaml"
    site.write_text(
        "scheduler: slurm\ncluster_name: hpcbridge\n"
        "ledger: {window: '30:00', overlap: '10:00', first_sync: '1-00:00:00'}\n"
    )
    return site


def run_sync(site: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [HPCBRIDGE, "ledger", "sync", "--site", str(site), "--ledger", url, "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_attempts(url: str, before: datetime) -> set[tuple[object, ...]]:
    """Attempts that ended in the 20 hours before ``before``: what two syncs started a few
    minutes apart both read, and what can no longer change. Clusters, accounts and users are
    compared by name: two ledgers number them in the order they first met them."""
    surrogate = {"id", "updated_at", "cluster_id", "account_id", "user_id"}
    attempts = JobAttempt.__table__
    columns = [c for c in attempts.columns if c.name not in surrogate]
    ended = attempts.c.end_at  # epoch seconds, compared as stored
    query = (
        select(Cluster.name, Account.name, User.name, *columns)
        .join_from(attempts, Cluster, Cluster.id == attempts.c.cluster_id)
        .outerjoin(Account, Account.id == attempts.c.account_id)
        .outerjoin(User, User.id == attempts.c.user_id)
        .where(
            ended < int(before.timestamp()),
            ended >= int((before - timedelta(hours=20)).timestamp()),
        )
    )
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    finally:
        engine.dispose()
    assert rows, "the test cluster has no finished jobs to compare"
    return {tuple(row) for row in rows}


def assert_unique_natural_keys(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(JobAttempt))
            distinct = connection.scalar(
                text(
                    "SELECT count(*) FROM (SELECT DISTINCT cluster_id, job_id, array_index, "
                    "attempt FROM job_attempts) AS keys"
                )
            )
    finally:
        engine.dispose()
    assert total == distinct


@pytest.fixture(scope="module")
def clean_sync(sync_site: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, datetime]:
    """A ledger filled by one uninterrupted sync, and when that sync started."""
    url = f"sqlite:///{tmp_path_factory.mktemp('clean') / 'clean.sqlite'}"
    started = datetime.now(UTC) - timedelta(minutes=1)
    process = run_sync(sync_site, url)
    _out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    return url, started


@pytest.mark.slurm
def test_a_sync_killed_with_sigkill_and_run_again_writes_what_one_clean_sync_writes(
    sync_site: Path, ledger_url: str, clean_sync: tuple[str, datetime]
) -> None:
    clean_url, started = clean_sync
    with Ledger.open(ledger_url) as ledger:
        victim = run_sync(sync_site, ledger_url)
        deadline = time.monotonic() + 120
        while ledger.read_until("hpcbridge", "sacct") is None:  # some windows are in
            assert victim.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert victim.returncode == -signal.SIGKILL
        interrupted_at = ledger.read_until("hpcbridge", "sacct")
        assert interrupted_at is not None
        assert interrupted_at < datetime.now(UTC) - timedelta(hours=1), "killed too late"
    rerun = run_sync(sync_site, ledger_url)
    _out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    assert finished_attempts(ledger_url, started) == finished_attempts(clean_url, started)
    assert_unique_natural_keys(ledger_url)


@pytest.mark.slurm
def test_two_syncs_at_once_write_what_one_clean_sync_writes(
    sync_site: Path, ledger_url: str, clean_sync: tuple[str, datetime]
) -> None:
    clean_url, started = clean_sync
    Ledger.open(ledger_url).close()  # both find the schema there; creating it is tested above
    first, second = run_sync(sync_site, ledger_url), run_sync(sync_site, ledger_url)
    for process in (first, second):
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        assert out == ""  # --quiet: a sync that worked prints nothing
    assert finished_attempts(ledger_url, started) == finished_attempts(clean_url, started)
    assert_unique_natural_keys(ledger_url)


@pytest.mark.slurm
def test_an_unreachable_scheduler_fails_the_sync_with_exit_5(
    sync_site: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    result = subprocess.run(
        [HPCBRIDGE, "ledger", "sync", "--site", str(sync_site), "--ledger", url, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},  # no sacct to be found
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "'sacct' is not installed or not on PATH" in result.stderr
    assert '"status": "failed"' in result.stdout


def test_quiet_sync_prints_nothing_on_success(tmp_path: Path) -> None:
    """From cron, a sync that worked must not mail anyone: no bar, no summary."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    argv = [HPCBRIDGE, "ledger", "sync", "--site", "local", "--ledger", url]
    loud = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    assert "attempts written" in loud.stdout
    quiet = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, env=env, check=True)
    assert (quiet.stdout, quiet.stderr) == ("", "")
