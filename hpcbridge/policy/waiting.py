"""Jobs submitted held for budget (``hpcbridge budget release`` lets them go: policy.release).

The scheduler holds such a job (``sbatch --hold``, ``qsub -h``); which of its held jobs
wait for *budget* (and not for a user's own hold) is recorded here, per site, in a JSON file
under ``$XDG_STATE_HOME/hpcbridge/budget/`` with each job's account, user and worst case,
so ``budget show`` can list them and a release knows what each still needs. The file is
replaced atomically under a file lock: a release run from cron while another runs, or while
a submission records a job, skips or waits, and never loses a record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpcbridge.files import write_atomically

Record = dict[str, Any]


def waiting_dir() -> Path:
    """``$XDG_STATE_HOME/hpcbridge/budget``, beside the CLI's other state."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "hpcbridge" / "budget"


class WaitingJobs:
    """The jobs of one site that wait for budget, by job id."""

    def __init__(self, site: str, directory: Path | None = None) -> None:
        folder = directory or waiting_dir()
        self.path = folder / f"{site}.json"
        self.lock_path = folder / f"{site}.lock"

    def records(self) -> dict[str, Record]:
        """Job id to its record ({account, user, core_hours, gpu_hours, submitted, reason},
        for a workflow also ``release`` and ``covers``: see :meth:`add`)."""
        try:
            data: dict[str, Record] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def job_ids(self) -> set[str]:
        return covered(self.records())

    def add(
        self,
        job_id: str,
        *,
        account: str,
        user: str,
        worst_case: tuple[float, float],
        reason: str,
        release: Sequence[str] = (),
        covers: Sequence[str] = (),
    ) -> None:
        """Record a job just submitted held for budget, with its worst case (core-hours,
        GPU-hours).

        A workflow held for budget is one record: ``job_id`` its first held entry stage,
        ``release`` every held entry stage (let go together), ``covers`` every job of the
        workflow in the account, whose sum ``worst_case`` is, so none of them counts as
        committed while the record waits (its other stages, pending on the held ones, would
        otherwise count twice).
        """
        with self.changing() as records:
            records[job_id] = {
                "account": account,
                "user": user,
                "core_hours": worst_case[0],
                "gpu_hours": worst_case[1],
                "submitted": datetime.now(UTC).isoformat(timespec="seconds"),
                "reason": reason,
            }
            if release:
                records[job_id]["release"] = list(release)
            if covers:
                records[job_id]["covers"] = list(covers)

    @contextmanager
    def changing(self, timeout: float = 30.0) -> Iterator[dict[str, Record]]:
        """The records, under the lock, written back when the block ends without error."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path), timeout=timeout):
            records = self.records()
            before = json.dumps(records, sort_keys=True, indent=1)
            yield records
            after = json.dumps(records, sort_keys=True, indent=1)
            if after != before:
                write_atomically(self.path, after.encode())


def covered(records: Mapping[str, Record]) -> set[str]:
    """Every job the records stand for: the held ones and the workflow stages behind them."""
    jobs = set(records)
    for record in records.values():
        jobs.update(record.get("covers", ()))
    return jobs


def to_release(job_id: str, record: Record) -> list[str]:
    """The held jobs a record lets go: its own, or a workflow's held entry stages."""
    return list(record.get("release", [job_id]))
