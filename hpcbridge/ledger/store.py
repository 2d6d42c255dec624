"""Opening a ledger and writing to it: batched idempotent upserts, watermarks, allocations.

Every write is an upsert on a natural key, so a sync that is killed and run again, or two syncs
that overlap, leave exactly the rows one clean sync would. Batches are committed one by one:
work done before a crash stays done, and a crash costs at most one batch, which the next sync
rewrites. Each batch marks the months it touched in the monthly rollup, and each call of
Ledger.upsert_attempts ends by recomputing them (hpcbridge.ledger.rollup). An attempt's job
steps (AttemptRecord.steps) are upserted in its batch's transaction, on their own natural key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, Insert, bindparam, delete, select
from sqlalchemy.exc import SQLAlchemyError

from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger import rollup
from hpcbridge.ledger.engine import default_ledger_url, dialect_insert, open_engine
from hpcbridge.ledger.rows import (
    ATTEMPT_COLUMNS,
    END,
    JOB_ID,
    NATURAL_KEY,
    START,
    STEP_COLUMNS,
    STEP_KEY,
    attempt_values,
    culprit,
    step_values,
)
from hpcbridge.ledger.schema import (
    Account,
    Allocation,
    Cluster,
    JobAttempt,
    JobStep,
    ProjectDeadline,
    SyncWatermark,
    User,
)

BATCH_SIZE = 5000
_Span = tuple[int | None, int | None]


class Ledger:
    """A ledger database: SQLite for one user, PostgreSQL for a group sharing one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ids: dict[tuple[type[Any], str], int] = {}

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = True) -> Ledger:
        """Connect, and bring the schema to the current version unless ``upgrade`` is False."""
        from hpcbridge.ledger.migrations import check_current, upgrade_schema

        ledger = cls(open_engine(url or default_ledger_url()))
        try:
            with ledger.transaction() as connection:
                (upgrade_schema if upgrade else check_current)(connection)
        except BaseException:
            ledger.close()
            raise
        return ledger

    def close(self) -> None:
        """Return every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Connection]:
        """A connection in a transaction; database errors leave as LedgerError.

        ``read_only`` transactions (reports) do not take SQLite's write lock, so they never
        wait for a sync that is writing; they read one snapshot (SQLite's WAL gives one, on
        PostgreSQL they are REPEATABLE READ), as a report reads the rollup and the attempts.
        """
        options: dict[str, Any] = {"ledger_read_only": read_only}
        if read_only and self.engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        try:
            with (
                self.engine.connect().execution_options(**options) as connection,
                connection.begin(),
            ):
                yield connection
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:  # COPY's too
            url = self.engine.url.render_as_string(hide_password=True)
            cause = getattr(exc, "orig", None) or exc
            raise LedgerError(f"ledger {url}: {exc.__class__.__name__}: {cause}") from exc

    def upsert_attempts(
        self,
        cluster: str,
        scheduler: str,
        records: Iterable[AttemptRecord],
        *,
        source: str,
        progress: Callable[[int], None] | None = None,
        refresh_rollup: bool = True,
    ) -> int:
        """Write attempts in committed batches; returns how many rows were written.

        Each batch marks the rollup months it touched, in its own transaction, and the call
        ends by recomputing every month marked (by it, or by a call that was interrupted),
        unless ``refresh_rollup`` is False: a sync writing window after window refreshes
        once, at its end (reports stay right meanwhile, reading marked months from the
        attempts).
        """
        written = 0
        iterator = iter(records)
        write = self._attempt_writer()
        write_steps = self._step_writer()
        while batch := list(islice(iterator, BATCH_SIZE)):
            with self.transaction() as connection:
                cluster_id = self._cluster_id(connection, cluster, scheduler)
                users = self._name_ids(connection, User, {r.user for r in batch if r.user})
                accounts = self._name_ids(
                    connection, Account, {r.account for r in batch if r.account}
                )
                shared = (cluster_id, source, int(datetime.now(UTC).timestamp()))
                try:
                    rows = [shared + attempt_values(record, users, accounts) for record in batch]
                except LedgerError as exc:
                    raise LedgerError(f"{culprit(batch, users, accounts)}: {exc}") from None
                replaced = write(connection, rows)
                steps = [
                    (cluster_id, *step_values(record, step, shared[2]))
                    for record in batch
                    for step in record.steps
                ]
                if steps:
                    write_steps(connection, steps)
                months = rollup.touched_months([(row[START], row[END]) for row in rows] + replaced)
                rollup.mark_dirty(connection, cluster_id, months)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
        if refresh_rollup:
            self.refresh_rollup()
        return written

    def refresh_rollup(self) -> None:
        """Recompute the rollup's marked months (see hpcbridge.ledger.rollup)."""
        with self.transaction() as connection:
            rollup.refresh(connection)

    def _attempt_writer(self) -> Callable[[Connection, list[tuple[Any, ...]]], list[_Span]]:
        """How a batch of attempt rows (tuples in ATTEMPT_COLUMNS order) reaches the database;
        it returns the (start, end) of the finished rows it replaced, whose months the
        rollup must recompute too.

        Both bypass SQLAlchemy's per-row parameter processing, which cost four times what
        SQLite itself spends on a row: SQLite gets the upsert through the driver's
        executemany; PostgreSQL gets the rows by COPY into a temporary table and one
        INSERT ... SELECT ... ON CONFLICT, 2.4 times the rate of row-by-row upserts.
        """
        if self.engine.dialect.name == "postgresql":
            return _CopyUpsert(
                JobAttempt.__tablename__,
                ATTEMPT_COLUMNS,
                NATURAL_KEY,
                replaced="a.end_at IS NOT NULL",
            )
        statement = self._positional_upsert(JobAttempt.__table__, ATTEMPT_COLUMNS, NATURAL_KEY)

        def executemany(connection: Connection, rows: list[tuple[Any, ...]]) -> list[_Span]:
            replaced = _sqlite_replaced(connection, rows)
            connection.exec_driver_sql(statement, rows)
            return replaced

        return executemany

    def _step_writer(self) -> Callable[[Connection, list[tuple[Any, ...]]], object]:
        """How a batch of step rows (tuples in STEP_COLUMNS order) reaches the database: as
        attempts do, without SQLAlchemy's per-row parameter processing."""
        if self.engine.dialect.name == "postgresql":
            return _CopyUpsert(JobStep.__tablename__, STEP_COLUMNS, STEP_KEY)
        statement = self._positional_upsert(JobStep.__table__, STEP_COLUMNS, STEP_KEY)
        return lambda connection, rows: connection.exec_driver_sql(statement, rows)

    def _positional_upsert(self, table: Any, columns: Sequence[str], key: Sequence[str]) -> str:
        """The SQL of an upsert on ``key`` binding ``columns`` in their order (driver rows)."""
        updated = [name for name in columns if name not in key]
        upsert = self._upsert(table, key, updated).values(
            {name: bindparam(name) for name in columns}
        )
        compiled = upsert.compile(dialect=self.engine.dialect)
        if tuple(compiled.positiontup or ()) != tuple(columns):
            raise LedgerError(f"internal: the {table.name} upsert binds columns out of order")
        return compiled.string

    def read_until(self, cluster: str, source: str) -> datetime | None:
        """The watermark of one source of a cluster: where its last complete read ended."""
        with self.transaction() as connection:
            return connection.scalar(
                select(SyncWatermark.read_until)
                .join(Cluster, Cluster.id == SyncWatermark.cluster_id)
                .where(Cluster.name == cluster, SyncWatermark.source == source)
            )

    def advance(self, cluster: str, scheduler: str, source: str, read_until: datetime) -> None:
        """Move a watermark forward; never back, so an older overlapping sync cannot rewind it."""
        with self.transaction() as connection:
            cluster_id = self._cluster_id(connection, cluster, scheduler)
            current = connection.scalar(
                select(SyncWatermark.read_until).where(
                    SyncWatermark.cluster_id == cluster_id, SyncWatermark.source == source
                )
            )
            if current is not None and current >= read_until:
                return
            row = {
                "cluster_id": cluster_id,
                "source": source,
                "read_until": read_until,
                "synced_at": datetime.now(UTC),
            }
            table = SyncWatermark.__table__
            connection.execute(self._upsert(table, ("cluster_id", "source"), list(row)[2:]), row)

    def set_allocation(
        self,
        account: str,
        starts: datetime,
        ends: datetime,
        core_hours: float,
        gpu_hours: float = 0.0,
    ) -> None:
        """Record (or replace) what an account was granted for the period starting ``starts``."""
        if ends <= starts:
            raise LedgerError(f"allocation of {account}: ends {ends} is not after starts {starts}")
        with self.transaction() as connection:
            account_id = self._name_ids(connection, Account, {account})[account]
            row = {
                "account_id": account_id,
                "starts": starts,
                "ends": ends,
                "core_hours": core_hours,
                "gpu_hours": gpu_hours,
            }
            table = Allocation.__table__
            connection.execute(self._upsert(table, ("account_id", "starts"), list(row)[2:]), row)

    def set_deadline(self, account: str, due: datetime | None, *, who: str) -> None:
        """Record (or replace; with None, clear) when an account's work is due."""
        with self.transaction() as connection:
            if due is None:
                ids = select(Account.id).where(Account.name == account).scalar_subquery()
                connection.execute(delete(ProjectDeadline).where(ProjectDeadline.account_id == ids))
                return
            row = {
                "account_id": self._name_ids(connection, Account, {account})[account],
                "due": due,
                "set_at": datetime.now(UTC),
                "set_by": who,
            }
            table = ProjectDeadline.__table__
            connection.execute(self._upsert(table, ("account_id",), list(row)[1:]), row)

    def _upsert(self, table: Any, key: Sequence[str], updated: Sequence[str]) -> Insert:
        statement = dialect_insert(self.engine)(table)
        upsert: Insert = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={name: statement.excluded[name] for name in updated},
        )
        return upsert

    def _cluster_id(self, connection: Connection, name: str, scheduler: str) -> int:
        cached = self._ids.get((Cluster, name))
        if cached is not None:
            return cached
        insert = dialect_insert(self.engine)(Cluster.__table__)
        connection.execute(
            insert.on_conflict_do_nothing(index_elements=["name"]),
            {"name": name, "scheduler": scheduler},
        )
        found = connection.scalar(select(Cluster.id).where(Cluster.name == name))
        if found is None:  # pragma: no cover - the row was inserted just above
            raise LedgerError(f"cluster {name!r} could not be recorded")
        self._ids[(Cluster, name)] = found
        return found

    def _name_ids(self, connection: Connection, table: Any, names: set[str]) -> dict[str, int]:
        """Ids of users or accounts by name, inserting the new ones; cached per Ledger."""
        missing = [name for name in names if (table, name) not in self._ids]
        if missing:
            insert = dialect_insert(self.engine)(table.__table__)
            connection.execute(
                insert.on_conflict_do_nothing(index_elements=["name"]),
                [{"name": name} for name in missing],
            )
            for row_id, name in connection.execute(
                select(table.id, table.name).where(table.name.in_(missing))
            ):
                self._ids[(table, name)] = row_id
        return {name: self._ids[(table, name)] for name in names}


class _CopyUpsert:
    """PostgreSQL: COPY a batch into a temporary table, then upsert it in one statement.

    With ``replaced`` (a condition on the existing rows, as ``a``), the call first returns
    the (start_at, end_at) of the rows meeting it that the batch is about to replace.
    """

    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        replaced: str | None = None,
    ) -> None:
        listed = ", ".join(columns)
        incoming = f"{table}_in"
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {incoming} ON COMMIT DELETE ROWS AS "
            f"SELECT {listed} FROM {table} WITH NO DATA"
        )
        self.copy = f"COPY {incoming} ({listed}) FROM STDIN"
        self.merge = (
            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {incoming} "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in columns if name not in key)
        )
        self.replaced = replaced and (
            f"SELECT a.start_at, a.end_at FROM {table} a JOIN {incoming} i USING "
            f"({', '.join(key)}) WHERE {replaced}"
        )
        self.key = [columns.index(name) for name in key]

    def __call__(self, connection: Connection, rows: list[tuple[Any, ...]]) -> list[_Span]:
        # One statement may not update a row twice: the last of a key's rows wins, as it
        # would row by row.
        unique = {tuple(row[i] for i in self.key): row for row in rows}
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(self.create)
        with cursor.copy(self.copy) as copy:
            for row in unique.values():
                copy.write_row(row)
        replaced: list[_Span] = cursor.execute(self.replaced).fetchall() if self.replaced else []
        cursor.execute(self.merge)
        return replaced


def _sqlite_replaced(connection: Connection, rows: list[tuple[Any, ...]]) -> list[_Span]:
    """(start, end) of the finished attempts these rows (of one cluster) may replace: every
    attempt of their job ids, a lookup on the unique index's prefix (matching whole keys
    with row values made SQLite scan), which at worst marks a few more months."""
    job_ids = list({row[JOB_ID] for row in rows})
    found = connection.exec_driver_sql(
        "SELECT start_at, end_at FROM job_attempts WHERE cluster_id = ? AND end_at IS NOT NULL "
        f"AND job_id IN ({', '.join(['?'] * len(job_ids))})",
        (rows[0][0], *job_ids),
    )
    return [tuple(row) for row in found]
