"""Where a submitted workflow's stage -> job id mapping lives between processes.

A record holds the stages as submitted (so ``resume`` needs no original file), the site, and
every submission of every stage. It is read and replaced whole, and changed under a lock, so
two ``resume`` runs cannot both resubmit the same stage. Two stores keep it:

- StateFileStore: one JSON file per workflow, replaced atomically (temporary file, then
  ``os.replace``) under a file lock. The folder is per user, not per site, so
  ``workflow status ID`` finds a workflow without being told its site.
- LedgerStore: a row of the ledger's ``workflows`` table, for a group sharing a PostgreSQL
  ledger (or one user's SQLite ledger).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from hpcbridge.errors import SpecError, WorkflowError
from hpcbridge.files import write_atomically
from hpcbridge.workflows.model import Workflow

if TYPE_CHECKING:
    from filelock import FileLock
    from sqlalchemy import Connection

    from hpcbridge.ledger.store import Ledger

# A lock held longer than this is another resume submitting hundreds of stages; say so.
_LOCK_TIMEOUT_S = 600.0


class Submission(BaseModel):
    """One job submitted for a stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    submitted: datetime
    # Nodes the submission asked to avoid (after a node failure), and whether the scheduler
    # accepted that: a cluster left with no other node refuses, and the job goes anywhere.
    excluded: str | None = None
    exclusion_refused: bool = False
    # A retry under the stage's retry policy (workflow watch): why, and the memory asked
    # for (raised after OUT_OF_MEMORY, so the next raise starts from it).
    retry: str | None = None
    memory_mb: int | None = None


class WorkflowRecord(BaseModel):
    """A workflow as submitted, and every job each of its stages has had (latest last)."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str
    site: str
    created: datetime
    workflow: Workflow
    jobs: dict[str, list[Submission]] = {}

    @classmethod
    def new(cls, workflow: Workflow, site: str) -> WorkflowRecord:
        """A record with a fresh id, ``<workflow name>-<8 hex digits>``."""
        return cls(
            workflow_id=f"{workflow.name}-{uuid.uuid4().hex[:8]}",
            site=site,
            created=datetime.now().astimezone(),
            workflow=workflow,
        )

    def latest_job(self, stage: str) -> str | None:
        """The job id of the stage's latest submission."""
        submissions = self.jobs.get(stage)
        return submissions[-1].job_id if submissions else None

    def add_job(self, stage: str, job_id: str, submitted: datetime, **details: Any) -> None:
        """Note a new submission of a stage (``details``: Submission's optional fields)."""
        submission = Submission(job_id=job_id, submitted=submitted, **details)
        self.jobs.setdefault(stage, []).append(submission)


def default_directory() -> Path:
    """``$XDG_STATE_HOME/hpcbridge/workflows``."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "hpcbridge" / "workflows"


class WorkflowStore(Protocol):
    """Keeps workflow records between processes."""

    def locked(self, workflow_id: str) -> AbstractContextManager[None]:
        """Hold the workflow's lock: load, change and save without another process between."""
        ...

    def load(self, workflow_id: str) -> WorkflowRecord:
        """The stored record; WorkflowError if there is none or it cannot be read."""
        ...

    def save(self, record: WorkflowRecord) -> None:
        """Replace the stored record whole."""
        ...

    def campaign(self, name: str) -> list[WorkflowRecord]:
        """The records of every scenario of campaign ``name``, oldest first."""
        ...


class StateFileStore:
    """Workflow records as ``<directory>/<workflow id>.json``."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        self._locks: dict[str, FileLock] = {}

    def path(self, workflow_id: str) -> Path:
        """The record file of a workflow id; ids that are not plain file names are refused."""
        if not workflow_id or Path(workflow_id).name != workflow_id or workflow_id[0] == ".":
            raise WorkflowError(f"{workflow_id!r} is not a workflow id")
        return self.directory / f"{workflow_id}.json"

    @contextmanager
    def locked(self, workflow_id: str) -> Iterator[None]:
        """Hold the workflow's lock: load, change and save without another process between."""
        from filelock import Timeout

        lock = self._lock(workflow_id)
        try:
            with lock.acquire(timeout=_LOCK_TIMEOUT_S):
                yield
        except Timeout as exc:
            raise WorkflowError(
                f"workflow {workflow_id} is locked by another process ({lock.lock_file})"
            ) from exc

    def load(self, workflow_id: str) -> WorkflowRecord:
        """The stored record; WorkflowError if there is none or it cannot be read."""
        path = self.path(workflow_id)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise WorkflowError(f"no workflow {workflow_id!r} in {self.directory}") from exc
        except OSError as exc:
            raise WorkflowError(f"cannot read workflow state {path}: {exc.strerror}") from exc
        return _parse(text, str(path))

    def save(self, record: WorkflowRecord) -> None:
        """Replace the record file whole, under the workflow's lock."""
        with self.locked(record.workflow_id):
            write_atomically(self.path(record.workflow_id), record.model_dump_json().encode())

    def campaign(self, name: str) -> list[WorkflowRecord]:
        """Every record file read whole: the folder is one user's, not a shared archive."""
        records = [_parse(path.read_text(), str(path)) for path in self._record_files()]
        return _of_campaign(records, name)

    def _record_files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.json"))
        except OSError as exc:
            raise WorkflowError(f"cannot list workflow states in {self.directory}: {exc}") from exc

    def _lock(self, workflow_id: str) -> FileLock:
        # One FileLock per id, so save() inside locked() re-enters it rather than deadlocking.
        if workflow_id not in self._locks:
            from filelock import FileLock

            path = self.path(workflow_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._locks[workflow_id] = FileLock(f"{path}.lock")
        return self._locks[workflow_id]


class LedgerStore:
    """Workflow records as rows of the ledger's ``workflows`` table.

    The lock is the database's: a PostgreSQL advisory lock per workflow, or SQLite's write
    lock, held by one transaction for the whole of ``locked()``. That transaction commits even
    when the work inside fails, because what was saved names jobs really submitted.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._connection: Connection | None = None

    @contextmanager
    def locked(self, workflow_id: str) -> Iterator[None]:
        """Hold the workflow's lock (re-entrant within this store)."""
        if self._connection is not None:
            yield
            return
        from sqlalchemy import text

        failure: BaseException | None = None
        with self.ledger.transaction() as connection:
            if connection.dialect.name == "postgresql":
                digest = hashlib.blake2b(workflow_id.encode(), digest_size=8).digest()
                key = int.from_bytes(digest, "big", signed=True)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            self._connection = connection
            try:
                yield
            except BaseException as exc:  # commit first, then raise it
                failure = exc
            finally:
                self._connection = None
        if failure is not None:
            raise failure

    def load(self, workflow_id: str) -> WorkflowRecord:
        """The stored record; WorkflowError if the ledger has none."""
        from sqlalchemy import select

        from hpcbridge.ledger.schema import WorkflowState

        query = select(WorkflowState.record).where(WorkflowState.workflow_id == workflow_id)
        with self._transaction(read_only=True) as connection:
            text = connection.execute(query).scalar_one_or_none()
        where = f"ledger {self.ledger.engine.url.render_as_string(hide_password=True)}"
        if text is None:
            raise WorkflowError(f"no workflow {workflow_id!r} in {where}")
        return _parse(text, f"workflow {workflow_id} in {where}")

    def save(self, record: WorkflowRecord) -> None:
        """Replace the row whole."""
        from sqlalchemy import delete, insert

        from hpcbridge.ledger.schema import WorkflowState

        row = {
            "workflow_id": record.workflow_id,
            "name": record.workflow.name,
            "site": record.site,
            "created_at": record.created,
            "updated_at": datetime.now().astimezone(),
            "record": record.model_dump_json(),
        }
        with self._transaction() as connection:
            connection.execute(
                delete(WorkflowState).where(WorkflowState.workflow_id == record.workflow_id)
            )
            connection.execute(insert(WorkflowState).values(row))

    def campaign(self, name: str) -> list[WorkflowRecord]:
        """Rows whose JSON names the campaign, checked once parsed (the text match only saves
        parsing every other workflow of the group)."""
        from sqlalchemy import select

        from hpcbridge.ledger.schema import WorkflowState

        pattern = f'%"campaign":{{"name":"{name}"%'
        query = select(WorkflowState.workflow_id, WorkflowState.record).where(
            WorkflowState.record.like(pattern)
        )
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(query).all()
        records = [
            _parse(text, f"workflow {workflow_id} in the ledger") for workflow_id, text in rows
        ]
        return _of_campaign(records, name)

    @contextmanager
    def _transaction(self, *, read_only: bool = False) -> Iterator[Connection]:
        if self._connection is not None:
            yield self._connection
            return
        with self.ledger.transaction(read_only=read_only) as connection:
            yield connection


def _of_campaign(records: list[WorkflowRecord], name: str) -> list[WorkflowRecord]:
    chosen = [r for r in records if r.workflow.campaign and r.workflow.campaign.name == name]
    return sorted(chosen, key=lambda record: record.created)


def _parse(text: str, where: str) -> WorkflowRecord:
    try:
        return WorkflowRecord.model_validate_json(text)
    except (ValidationError, SpecError) as exc:
        raise WorkflowError(f"workflow state {where} is unusable: {exc}") from exc
