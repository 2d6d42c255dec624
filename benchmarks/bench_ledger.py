"""Ledger benchmarks: ingest rate, usage-report time on a large ledger, SWF trace import.

    .venv/bin/python benchmarks/bench_ledger.py [--rows 1000000] [--trace PATH]
        [--postgres URL | --no-postgres] [--associations]

For SQLite (a file in a temporary folder) and PostgreSQL (a database created for the run on
the test server of tests/cluster/postgres-up.sh, dropped after), prints: the rate at which
Ledger.upsert_attempts writes N synthetic attempts (built beforehand, so only the ledger is
timed; the monthly rollup is refreshed at the end of the call and counted), the time of
usage reports over the whole ledger (median of 3) next to the simplest GROUP BY over the
same table (a floor that shows how busy the machine is), the time to write a sync-sized
batch of 5,000 more attempts into the full ledger, and the time to import the SWF trace.
Run by hand; this is not a timed test.

By default every job draws its user and its account independently, so nearly every
attempt is a (month, account, user, partition, state) group of its own and the rollup is
as large as the table: the worst case for it. ``--associations`` draws them as Slurm
associations do (each user charges one home account, and a second one for a tenth of jobs).
"""

from __future__ import annotations

import argparse
import functools
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from timing import median_of

from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.sources.swf import SwfTrace, import_swf
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import usage_report

POSTGRES_URL = "postgresql+psycopg://hpcbridge:hpcbridge@127.0.0.1:55432/hpcbridge"
TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "SDSC-DS-2004-2.1-cln.swf.gz"
SPAN_START = datetime(2023, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
REPORTS = (("account",), ("account", "month"), ("user", "month"), ("partition", "state"))
FLOOR = text(
    "SELECT account_id, sum(alloc_cpus * (end_at - start_at)) FROM job_attempts GROUP BY 1"
)


def synthetic_attempts(
    count: int,
    seed: int = 1,
    *,
    associations: bool = False,
    first_id: int = 1_000_000,
    since: datetime = SPAN_START,
    span: timedelta = SPAN,
) -> list[AttemptRecord]:
    """Three years of a mid-sized cluster: 500 users, 100 accounts, jobs of minutes to days
    (or ``span`` from ``since``)."""
    rng = random.Random(seed)
    users = [f"user{i}" for i in range(500)]
    accounts = [f"project{i}" for i in range(100)]
    partitions = ["batch", "long", "gpu", "debug"]
    states = [JobState.COMPLETED] * 8 + [JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED]
    span_s = int(span.total_seconds())
    records = []
    for index in range(count):
        submit = since + timedelta(seconds=rng.randrange(span_s))
        start = submit + timedelta(seconds=int(rng.expovariate(1 / 1800)))
        running = index % 100 == 0
        elapsed = int(min(rng.lognormvariate(7.5, 1.5), 2 * 86400))
        cpus = rng.choice((1, 1, 2, 4, 8, 16, 32, 64, 128, 256))
        partition = rng.choice(partitions)
        user = rng.randrange(len(users))
        if associations:
            account = accounts[(user if rng.random() < 0.9 else user * 7 + 1) % len(accounts)]
        else:
            account = rng.choice(accounts)
        records.append(
            AttemptRecord(
                job_id=str(first_id + index),
                attempt=1,
                state=JobState.RUNNING if running else rng.choice(states),
                user=users[user],
                account=account,
                partition=partition,
                submit=submit,
                start=start,
                end=None if running else start + timedelta(seconds=elapsed),
                elapsed_s=None if running else elapsed,
                alloc_cpus=cpus,
                alloc_gpus=rng.choice((1, 2, 4)) if partition == "gpu" else 0,
                req_walltime_s=2 * 86400,
                cpu_time_s=None if running else elapsed * cpus * rng.uniform(0.2, 1.0),
            )
        )
    return records


@contextmanager
def fresh_postgres(url: str) -> Iterator[str]:
    """A database of its own on the server at ``url``, dropped afterwards."""
    name = f"hpcbridge_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'ledger.sqlite'}"


def bench_database(
    label: str, url: str, records: list[AttemptRecord], more: list[AttemptRecord]
) -> None:
    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        written = ledger.upsert_attempts("bench", "slurm", records, source="bench")
        rate = written / (time.perf_counter() - started)
        print(f"{label}: ingest {written:,} attempts: {rate:,.0f} rows/s")
        end = SPAN_START + SPAN
        with ledger.engine.connect() as connection:
            floor = median_of(3, functools.partial(connection.execute, FLOOR))
        print(f"{label}: for scale, the simplest GROUP BY over the table: {floor:.2f} s")
        for by in REPORTS:
            report = functools.partial(usage_report, ledger, by, SPAN_START, end)
            seconds = median_of(3, report)
            rows = len(report().rows)
            print(
                f"{label}: report --by {','.join(by)} over 3 years: {seconds:.2f} s ({rows:,} rows)"
            )
        with ledger.engine.connect() as connection:
            rollup_rows = connection.scalar(text("SELECT count(*) FROM usage_monthly"))
        print(f"{label}: the monthly rollup holds {rollup_rows:,} rows")
        started = time.perf_counter()
        ledger.upsert_attempts("bench", "slurm", more, source="bench")
        elapsed = time.perf_counter() - started
        print(f"{label}: write {len(more):,} more attempts (a sync's worth): {elapsed:.2f} s")


def bench_trace(label: str, url: str, trace: Path) -> None:
    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        written = import_swf(ledger, SwfTrace(trace))
        elapsed = time.perf_counter() - started
    print(f"{label}: import {trace.name}: {written:,} jobs in {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--postgres", default=POSTGRES_URL, help="a role that may CREATE DATABASE")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--associations", action="store_true", help="users charge few accounts")
    options = parser.parse_args()

    started = time.perf_counter()
    records = synthetic_attempts(options.rows, associations=options.associations)
    more = synthetic_attempts(  # the last day's jobs
        5000,
        seed=2,
        associations=options.associations,
        first_id=1_000_000 + options.rows,
        since=SPAN_START + SPAN - timedelta(days=1),
        span=timedelta(days=1),
    )
    print(f"built {len(records):,} synthetic attempts in {time.perf_counter() - started:.1f} s")
    databases: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
        ("SQLite", fresh_sqlite)
    ]
    if not options.no_postgres:
        databases.append(("PostgreSQL", lambda: fresh_postgres(options.postgres)))
    for label, fresh in databases:
        try:
            with fresh() as url:
                bench_database(label, url, records, more)
            if options.trace.is_file():
                with fresh() as url:
                    bench_trace(label, url, options.trace)
        except (SQLAlchemyError, LedgerError) as exc:
            print(f"{label}: skipped ({str(exc).splitlines()[0]})")


if __name__ == "__main__":
    main()
