"""The ledger database: schema versions, idempotent upserts, watermarks, allocations.

Each test runs on SQLite and on the real PostgreSQL server (the ``ledger_url`` fixture).
"""

from __future__ import annotations

import re
import stat
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from hpcbridge import JobState
from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.engine import default_ledger_url
from hpcbridge.ledger.migrations import head_revision
from hpcbridge.ledger.schema import Account, Allocation, Base, JobAttempt, User
from hpcbridge.ledger.store import Ledger

T0 = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)


def attempt(job_id: str, number: int = 1, **fields: object) -> AttemptRecord:
    values: dict[str, object] = {
        "state": JobState.COMPLETED,
        "user": "alice",
        "account": "physics",
        "submit": T0,
        "start": T0 + timedelta(minutes=5),
        "end": T0 + timedelta(hours=3),
        "alloc_cpus": 4,
    }
    values.update(fields)
    return AttemptRecord(job_id=job_id, attempt=number, **values)  # type: ignore[arg-type]


def rows(ledger: Ledger) -> list[tuple[object, ...]]:
    with ledger.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(
                    JobAttempt.job_id,
                    JobAttempt.array_index,
                    JobAttempt.attempt,
                    JobAttempt.state,
                    JobAttempt.start_at,
                    JobAttempt.end_at,
                    User.name,
                    Account.name,
                )
                .join(User, User.id == JobAttempt.user_id)
                .join(Account, Account.id == JobAttempt.account_id)
                .order_by(JobAttempt.job_id, JobAttempt.array_index, JobAttempt.attempt)
            )
        ]


def test_a_new_ledger_is_created_at_the_newest_schema_which_matches_the_models(
    ledger: Ledger,
) -> None:
    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []


def test_opening_an_old_ledger_without_upgrading_says_how_to_upgrade(ledger_url: str) -> None:
    with pytest.raises(LedgerError, match=r"schema version none.*hpcbridge ledger upgrade"):
        Ledger.open(ledger_url, upgrade=False)
    Ledger.open(ledger_url).close()
    with Ledger.open(ledger_url, upgrade=False) as ledger:  # now current: opens
        assert rows(ledger) == []


def test_a_ledger_written_by_a_newer_hpcbridge_is_refused_naming_both_versions(
    ledger_url: str,
) -> None:
    with Ledger.open(ledger_url) as ledger, ledger.transaction() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    newer = r"schema version 9999, newer than this hpcbridge knows \(its newest is "
    for upgrade in (True, False):
        with pytest.raises(LedgerError, match=newer + re.escape(f"{head_revision()})")):
            Ledger.open(ledger_url, upgrade=upgrade)


def test_upserting_the_same_attempts_twice_leaves_one_row_each(ledger: Ledger) -> None:
    records = [attempt("10"), attempt("11"), attempt("12", array_index=0), attempt("12")]
    assert ledger.upsert_attempts("c1", "slurm", records, source="sacct") == 4
    first = rows(ledger)
    ledger.upsert_attempts("c1", "slurm", records, source="sacct")
    assert rows(ledger) == first
    assert len(first) == 4


def test_a_running_attempt_is_updated_when_it_ends(ledger: Ledger) -> None:
    running = attempt("20", state=JobState.RUNNING, end=None)
    ledger.upsert_attempts("c1", "slurm", [running], source="sacct")
    assert rows(ledger)[0][3:6] == ("RUNNING", running.start, None)
    ended = replace(running, state=JobState.TIMEOUT, end=T0 + timedelta(hours=1))
    ledger.upsert_attempts("c1", "slurm", [ended], source="sacct")
    assert rows(ledger)[0][3:6] == ("TIMEOUT", running.start, T0 + timedelta(hours=1))


def test_every_attempt_of_a_requeued_job_is_kept(ledger: Ledger) -> None:
    runs = [attempt("30", n, state=JobState.REQUEUED) for n in (1, 2)] + [attempt("30", 3)]
    ledger.upsert_attempts("c1", "slurm", runs, source="sacct")
    assert [(row[2], row[3]) for row in rows(ledger)] == [
        (1, "REQUEUED"),
        (2, "REQUEUED"),
        (3, "COMPLETED"),
    ]


def test_the_same_job_id_on_two_clusters_is_two_jobs(ledger: Ledger) -> None:
    ledger.upsert_attempts("c1", "slurm", [attempt("40")], source="sacct")
    ledger.upsert_attempts("c2", "pbs", [attempt("40")], source="pbs-log")
    assert len(rows(ledger)) == 2


def test_batches_larger_than_one_commit_are_all_written(ledger: Ledger) -> None:
    seen: list[int] = []
    records = (attempt(str(n), user=f"u{n % 7}") for n in range(12_345))
    written = ledger.upsert_attempts("c1", "slurm", records, source="swf", progress=seen.append)
    assert written == 12_345 == sum(seen)
    assert len(seen) == 3
    with ledger.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == 7


def test_a_naive_time_is_refused_with_the_job_named_and_nothing_half_written(
    ledger: Ledger,
) -> None:
    bad = attempt("51", start=datetime(2026, 1, 1, 12, 0))  # no time zone
    with pytest.raises(LedgerError, match=r"job 51 attempt 1: .*timezone-aware"):
        ledger.upsert_attempts("c1", "slurm", [attempt("50"), bad], source="sacct")
    assert rows(ledger) == []


def test_times_come_back_as_the_same_utc_instants(ledger: Ledger) -> None:
    berlin = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo)
    ledger.upsert_attempts("c1", "slurm", [attempt("60", start=berlin)], source="sacct")
    with ledger.engine.connect() as connection:
        stored = connection.scalar(select(JobAttempt.start_at))
        seconds = connection.scalar(text("SELECT start_at FROM job_attempts"))
    assert stored == berlin
    assert stored.tzinfo is UTC
    assert seconds == int(berlin.timestamp())


def test_watermarks_only_move_forward(ledger: Ledger) -> None:
    assert ledger.read_until("c1", "sacct") is None
    ledger.advance("c1", "slurm", "sacct", T0)
    ledger.advance("c1", "slurm", "sacct", T0 - timedelta(days=1))  # an older sync finishing
    assert ledger.read_until("c1", "sacct") == T0
    ledger.advance("c1", "slurm", "sacct", T0 + timedelta(hours=1))
    assert ledger.read_until("c1", "sacct") == T0 + timedelta(hours=1)
    assert ledger.read_until("c1", "pbs-log") is None


def test_an_allocation_is_recorded_and_replaced_for_the_same_period(ledger: Ledger) -> None:
    ends = T0 + timedelta(days=365)
    ledger.set_allocation("physics", T0, ends, core_hours=50_000)
    ledger.set_allocation("physics", T0, ends, core_hours=80_000, gpu_hours=1_000)
    with ledger.engine.connect() as connection:
        granted = connection.execute(select(Allocation.core_hours, Allocation.gpu_hours)).all()
    assert granted == [(80_000, 1_000)]
    with pytest.raises(LedgerError, match=r"allocation of physics: ends .* is not after starts"):
        ledger.set_allocation("physics", ends, T0, core_hours=1)


def test_the_default_sqlite_ledger_is_private_and_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = default_ledger_url()
    assert url == f"sqlite:///{tmp_path}/data/hpcbridge/ledger.sqlite"
    with Ledger.open() as ledger:
        ledger.upsert_attempts("c1", "local", [attempt("1")], source="local")
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    path = tmp_path / "data" / "hpcbridge" / "ledger.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_two_writers_on_one_sqlite_ledger_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    with Ledger.open(url) as first, Ledger.open(url) as second:
        with first.transaction():
            pass  # both connections exist; now write through both, interleaved
        for number in range(5):
            first.upsert_attempts("c1", "slurm", [attempt(str(number))], source="a")
            second.upsert_attempts("c1", "slurm", [attempt(str(number))], source="b")
        assert len(rows(first)) == 5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/ledger", "only sqlite:// and postgresql:// are supported"),
        ("not a url", "is not a database URL"),
    ],
)
def test_an_unsupported_ledger_url_is_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        Ledger.open(url)


def test_an_unwritable_ledger_location_is_a_ledger_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="cannot create the ledger file"):
        Ledger.open(f"sqlite:///{blocker}/ledger.sqlite")


def test_an_unreachable_postgresql_server_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="ledger postgresql"):
        Ledger.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_database_errors_name_the_ledger_and_hide_its_password(ledger: Ledger) -> None:
    failing = pytest.raises(LedgerError, match=r"no such table|does not exist")
    with failing as caught, ledger.transaction() as connection:
        connection.execute(text("SELECT * FROM missing_table"))
    assert str(caught.value).startswith(f"ledger {ledger.engine.url.drivername}")
    assert ":hpcbridge@" not in str(caught.value)


def test_a_read_only_transaction_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    with Ledger.open(url) as writer, Ledger.open(url) as reader:
        writer.upsert_attempts("c1", "slurm", [attempt("1")], source="sacct")
        with writer.transaction() as writing:  # holds the write lock
            writing.execute(text("UPDATE job_attempts SET state = 'FAILED'"))
            started = time.monotonic()
            with reader.transaction(read_only=True) as reading:
                seen = reading.scalar(select(JobAttempt.state))
            assert time.monotonic() - started < 1
            assert seen == "COMPLETED"  # the last committed state


def test_the_last_of_a_key_s_rows_in_one_batch_wins(ledger: Ledger) -> None:
    running = attempt("70", state=JobState.RUNNING, end=None)
    ledger.upsert_attempts("c1", "slurm", [running, attempt("70")], source="sacct")
    assert [row[3] for row in rows(ledger)] == ["COMPLETED"]
