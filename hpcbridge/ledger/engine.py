"""The database under a ledger: its default place, and an engine set up for SQLite (WAL, a
private file, writers queueing) or PostgreSQL (psycopg), with the insert that upserts there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpcbridge.errors import LedgerError


def default_ledger_url() -> str:
    """``$XDG_DATA_HOME/hpcbridge/ledger.sqlite``: one private ledger per user by default."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'hpcbridge' / 'ledger.sqlite'}"


def dialect_insert(engine: Engine) -> Callable[[Any], Any]:
    """The insert construct with ON CONFLICT for this database; both dialects spell it alike."""
    if engine.dialect.name == "sqlite":
        return sqlite.insert
    if engine.dialect.name == "postgresql":
        return postgresql.insert
    raise LedgerError(f"ledger databases are SQLite or PostgreSQL, not {engine.dialect.name}")


def open_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerError(f"ledger URL {url!r} is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() != "postgresql":
        raise LedgerError(f"ledger URL {url!r}: only sqlite:// and postgresql:// are supported")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise LedgerError(
            f"a PostgreSQL ledger needs psycopg: pip install 'hpcbridge[postgres]' ({exc})"
        ) from exc


def _sqlite_engine(url: str, database: str | None) -> Engine:
    """WAL so reports read while a sync writes; a private (0600) file; writers queue, not fail.

    Foreign keys are left unenforced, as SQLite's default: checking three per row halved the
    ingest rate, and the ledger writes the rows they point to in the same transaction.
    """
    if database and database != ":memory:":
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger file {path}: {exc.strerror}") from exc
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin below, not in the driver
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers wait for each other
        # (busy_timeout) instead of one failing at once on a read-to-write upgrade.
        read_only = connection.get_execution_options().get("ledger_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
