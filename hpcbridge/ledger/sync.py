"""One ledger sync: read every accounting source of a cluster from its watermark, safely from cron.

A sync holds a per-cluster lock for its whole run (a file lock beside a SQLite ledger, a
PostgreSQL advisory lock on a shared one), so overlapping cron runs queue instead of racing.
The lock is a courtesy, not what keeps the ledger right: every write is an idempotent upsert
and a watermark moves only after its window's rows are committed, so a sync killed at any
point and run again writes exactly the rows one clean sync would.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from hpcbridge.errors import ConfigError, HpcBridgeError, LedgerError, SchedulerError
from hpcbridge.ledger.sources.base import AccountingSource, Window
from hpcbridge.ledger.store import Ledger
from hpcbridge.site import SiteConfig
from hpcbridge.transports.base import Transport


class SyncStatus(enum.StrEnum):
    """How a sync ended; the CLI turns these into exit codes 0, 7 and the error's own."""

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass
class SourceOutcome:
    """What one source contributed to a sync."""

    source: str
    windows: int = 0
    windows_read: int = 0
    rows: int = 0
    error: HpcBridgeError | None = None


@dataclass
class SyncResult:
    """Every source's outcome, and the sync's status drawn from them."""

    cluster: str
    outcomes: list[SourceOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(outcome.rows for outcome in self.outcomes)

    @property
    def status(self) -> SyncStatus:
        failed = [outcome for outcome in self.outcomes if outcome.error]
        if not failed:
            return SyncStatus.OK
        if len(failed) == len(self.outcomes) and not any(o.windows_read for o in failed):
            return SyncStatus.FAILED
        return SyncStatus.PARTIAL


class Progress:
    """What a sync reports as it goes; the CLI shows a bar, cron shows nothing."""

    def windows_planned(self, source: str, count: int) -> None:
        """``count`` windows of ``source`` are about to be read."""

    def window_done(self, source: str, window: Window, rows: int) -> None:
        """One window was read and written."""


def sync(
    ledger: Ledger,
    cluster: str,
    scheduler: str,
    sources: Sequence[AccountingSource],
    *,
    progress: Progress | None = None,
    lock_timeout: float = 600.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncResult:
    """Read every source's new windows into the ledger, each source from its own watermark.

    A failing source stops at the window that failed (its watermark stays before it) and the
    other sources still run: the result is then PARTIAL, or FAILED when nothing was read.
    """
    report = progress or Progress()
    started = time.monotonic()
    result = SyncResult(cluster)
    with cluster_lock(ledger, cluster, timeout=lock_timeout):
        for source in sources:
            outcome = SourceOutcome(source.name)
            result.outcomes.append(outcome)
            try:
                windows = source.windows(ledger.read_until(cluster, source.name), now())
                outcome.windows = len(windows)
                report.windows_planned(source.name, len(windows))
                for window in windows:
                    records = source.fetch(window)
                    rows = ledger.upsert_attempts(
                        cluster, scheduler, records, source=source.name, refresh_rollup=False
                    )
                    if window.complete:
                        ledger.advance(cluster, scheduler, source.name, window.end)
                    outcome.windows_read += 1
                    outcome.rows += rows
                    report.window_done(source.name, window, rows)
            except LedgerError:
                raise  # the ledger itself failing ends the sync: no source can be written
            except HpcBridgeError as error:
                outcome.error = _explained(source, error)
        ledger.refresh_rollup()  # once for every window read, not once per window
    result.seconds = time.monotonic() - started
    return result


def _explained(source: AccountingSource, error: HpcBridgeError) -> HpcBridgeError:
    """A PBS accounting log the sync's user may not read is a setup to fix, not the
    scheduler refusing: a ConfigError (exit 3), naming the folder and both ways out."""
    from hpcbridge.ledger.sources.pbs import PbsLogSource

    if not (
        isinstance(error, SchedulerError)
        and "Permission denied" in error.stderr
        and isinstance(source, PbsLogSource)
    ):
        return error
    path = error.argv[-1] if error.argv else source.accounting_dir
    unreadable = ConfigError(
        f"cannot read the PBS accounting log {path}: permission denied. server_priv/accounting "
        f"({source.accounting_dir}) must be readable by the user running the sync, on the host "
        "that holds it (PBS keeps server_priv for root; an administrator can grant read "
        "access), or set ledger.pbs_source: qstat in the site config to read qstat's job "
        "history instead"
    )
    unreadable.__cause__ = error
    return unreadable


def sources_for(site: SiteConfig, transport: Transport) -> list[AccountingSource]:
    """The accounting sources of a site's scheduler, set up from its ``ledger`` options."""
    options = site.ledger
    window, overlap = timedelta(seconds=options.window), timedelta(seconds=options.overlap)
    first_sync = timedelta(seconds=options.first_sync)
    if site.scheduler == "slurm":
        from hpcbridge.ledger.sources.slurm import SacctSource

        return [SacctSource(transport, window=window, overlap=overlap, first_sync=first_sync)]
    if site.scheduler == "pbs" and options.pbs_source == "qstat":
        from hpcbridge.ledger.sources.pbs import PbsQstatSource

        return [
            PbsQstatSource(
                transport, json_output=site.pbs.json_output, overlap=overlap, first_sync=first_sync
            )
        ]
    if site.scheduler == "pbs":
        from zoneinfo import ZoneInfo

        from hpcbridge.ledger.sources.pbs import PbsLogSource

        zone = options.pbs_server_timezone
        return [
            PbsLogSource(
                transport,
                accounting_dir=options.pbs_accounting_dir,
                server_tz=ZoneInfo(zone) if zone else None,
                first_sync=first_sync,
            )
        ]
    if site.scheduler == "local":
        from hpcbridge.backends.local.backend import default_state_dir
        from hpcbridge.ledger.sources.local import LocalSource

        return [LocalSource(site.state_dir or default_state_dir(), overlap=overlap)]
    raise ConfigError(f"site {site.name}: no accounting source for scheduler {site.scheduler}")


@contextmanager
def cluster_lock(ledger: Ledger, cluster: str, *, timeout: float) -> Iterator[None]:
    """Hold the one-sync-per-cluster lock of this ledger, waiting at most ``timeout`` seconds."""
    if ledger.engine.dialect.name == "postgresql":
        with _advisory_lock(ledger, cluster, timeout):
            yield
        return
    from filelock import FileLock, Timeout

    database = ledger.engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory ledger: no other process can reach it
        return
    path = Path(f"{database}.{cluster}.sync.lock")
    try:
        with FileLock(path, timeout=timeout):
            yield
    except Timeout as exc:
        raise LedgerError(
            f"another sync of cluster {cluster} still holds {path} after {timeout:g} s"
        ) from exc


@contextmanager
def _advisory_lock(ledger: Ledger, cluster: str, timeout: float) -> Iterator[None]:
    """A session-level PostgreSQL advisory lock, which the server drops if the client dies."""
    key = f"hpcbridge-sync:{cluster}"
    deadline = time.monotonic() + timeout
    with ledger.engine.connect() as connection:
        lock = text("SELECT pg_try_advisory_lock(hashtext(:key))")
        while not connection.execute(lock, {"key": key}).scalar():
            connection.rollback()
            if time.monotonic() > deadline:
                raise LedgerError(
                    f"another sync of cluster {cluster} still holds its lock after {timeout:g} s"
                )
            time.sleep(0.5)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
            connection.commit()
