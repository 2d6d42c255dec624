"""pytest plugin: a fresh ledger database per test, on SQLite and on PostgreSQL.

Register it with ``pytest_plugins = ["ledger_plugin"]``. A test that takes ``ledger_url`` or
``ledger`` runs twice: once on an SQLite file in its tmp dir, once on a PostgreSQL database
created for that test alone and dropped after it (tests run in parallel under xdist, so
they never share one). The PostgreSQL run is marked ``postgres`` and needs the server of
tests/cluster/postgres-up.sh, or another one named by ``HPCBRIDGE_TEST_POSTGRES_URL`` whose
role may create databases.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from hpcbridge.ledger.store import Ledger

POSTGRES_URL = os.environ.get(
    "HPCBRIDGE_TEST_POSTGRES_URL",
    "postgresql+psycopg://hpcbridge:hpcbridge@127.0.0.1:55432/hpcbridge",
)


@functools.cache
def postgres_problem() -> str | None:
    """Why the PostgreSQL test server cannot be used, or None when it answers."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    except ImportError as exc:
        return f"the PostgreSQL driver is missing ({exc}); pip install -e '.[dev]'"
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return f"PostgreSQL at {where} does not answer ({reason}); run tests/cluster/postgres-up.sh"
    finally:
        engine.dispose()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of its own: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    yield from _fresh_postgres_database()


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A ledger at the current schema in its own empty database."""
    opened = Ledger.open(ledger_url)
    try:
        yield opened
    finally:
        opened.close()


def _fresh_postgres_database() -> Iterator[str]:
    """CREATE DATABASE with a unique name, hand out its URL, DROP it (connections and all)."""
    name = f"hpcbridge_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url: URL = make_url(POSTGRES_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
