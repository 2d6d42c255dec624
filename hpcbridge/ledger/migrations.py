"""Schema versions: Alembic migrations shipped in accounting/migrations, run from code.

A ledger is upgraded inside one transaction holding a lock (SQLite's write lock, a PostgreSQL
advisory lock), so two cron jobs starting together on a new ledger do not both create it.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from hpcbridge.errors import LedgerError
from hpcbridge.resources import data_dir

_UPGRADE_LOCK = 0x6870_6362  # "hpcb": the advisory lock key of schema upgrades


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(data_dir("accounting") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest schema version this hpcbridge knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The version a ledger is at; None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(connection: Connection) -> None:
    """Create the ledger's tables or bring them to the newest version, inside the caller's
    transaction (Ledger.transaction, which also turns database errors into LedgerError)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    found = current_revision(connection)
    if found != head_revision():
        _refuse_newer(connection, found)
        command.upgrade(_config(connection), "head")


def check_current(connection: Connection) -> None:
    """Refuse a ledger at another version than this hpcbridge's, saying how to fix it."""
    found = current_revision(connection)
    expected = head_revision()
    if found != expected:
        _refuse_newer(connection, found)
        raise LedgerError(
            f"ledger {_url(connection)} is at schema version {found or 'none'}, this hpcbridge "
            f"needs {expected}: run `hpcbridge ledger upgrade`"
        )


def _refuse_newer(connection: Connection, found: str | None) -> None:
    """A ledger written by a newer hpcbridge cannot be upgraded, nor safely written, by this
    one: say so, rather than Alembic's "Can't locate revision"."""
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    if found is not None and found not in known:
        raise LedgerError(
            f"ledger {_url(connection)} is at schema version {found}, newer than this "
            f"hpcbridge knows (its newest is {head_revision()}): use the hpcbridge that wrote "
            "it, or a newer one"
        )


def _url(connection: Connection) -> str:
    return connection.engine.url.render_as_string(hide_password=True)
