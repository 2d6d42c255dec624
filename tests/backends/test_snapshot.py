"""The shared status snapshot's rules, on scripted Slurm answers (FakeTransport): when it is
read, when refreshed, what it leaves to sacct, and how its file is kept. The claims about
several processes and a real scheduler are in test_shared_poll.py."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcbridge import Cluster, ConfigError, FakeTransport, JobState, SiteConfig
from hpcbridge.backends.slurm import SlurmBackend
from hpcbridge.backends.slurm.cli import FIELD_SEPARATOR
from hpcbridge.backends.snapshot import SharedPoll, cache_directory


class FakeSlurm:
    """squeue --me and sacct answers from ``queue`` and ``accounting`` (job id -> state)."""

    def __init__(self) -> None:
        self.queue: dict[str, str] = {}
        self.accounting: dict[str, str] = {}
        self.transport = FakeTransport(self.answer)

    def answer(self, argv: list[str], stdin: str | None) -> str:
        asked = next((a.partition("=")[2].split(",") for a in argv if a[:7] == "--jobs="), None)
        if argv[0] == "squeue":
            listed = self.queue.items()
            return "".join(
                _squeue_line(job, state) for job, state in listed if asked is None or job in asked
            )
        assert argv[0] == "sacct", argv
        return "".join(
            _sacct_line(job, self.accounting[job]) for job in asked or () if job in self.accounting
        )

    def count(self, program: str) -> int:
        return sum(1 for call in self.transport.calls if call.argv[0] == program)


def _squeue_line(job_id: str, state: str) -> str:
    fields = [job_id, job_id, "N/A", "sim", state, "None", "vm", "debug", "physics"]
    return FIELD_SEPARATOR.join([*fields, "2026-12-03T10:00:00", "N/A", "N/A", ""]) + "\n"


def _sacct_line(job_id: str, state: str) -> str:
    fields = [job_id, job_id, "sim", state, "0:0", "None", "vm", "debug", "physics"]
    return FIELD_SEPARATOR.join([*fields, *["2026-12-03T10:00:00"] * 3]) + "\n"


@pytest.fixture
def slurm() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def poller(slurm: FakeSlurm, folder: Path, site: str = "fake") -> SharedPoll:
    return SharedPoll(SlurmBackend(slurm.transport), site, folder)


def write_snapshot(poll: SharedPoll, taken: float, jobs: dict[str, str]) -> None:
    rows = [{"job_id": job, "state": state} for job, state in jobs.items()]
    poll.path.write_text(json.dumps({"format": 1, "taken": taken, "jobs": rows}))


def test_a_young_snapshot_answers_without_asking_the_scheduler(
    slurm: FakeSlurm, folder: Path
) -> None:
    slurm.queue = {"11": "RUNNING", "12": "PENDING"}
    first, second = poller(slurm, folder), poller(slurm, folder)  # two processes' views
    assert first.status(["11"], max_age=30)["11"].state is JobState.RUNNING
    assert second.status(["12"], max_age=30)["12"].state is JobState.PENDING
    assert slurm.count("squeue") == 1


def test_a_stale_snapshot_is_refreshed(slurm: FakeSlurm, folder: Path) -> None:
    poll = poller(slurm, folder)
    write_snapshot(poll, time.time() - 60, {"11": "PENDING"})
    slurm.queue = {"11": "RUNNING"}
    assert poll.status(["11"], max_age=30)["11"].state is JobState.RUNNING
    assert slurm.count("squeue") == 1
    assert json.loads(poll.path.read_text())["taken"] > time.time() - 5


def test_a_job_the_snapshot_predates_is_left_out_until_the_next_one(
    slurm: FakeSlurm, folder: Path
) -> None:
    """Submitted after the snapshot was taken: not sent to sacct as if it had ended, just
    not known yet (as squeue would not know it a moment after sbatch)."""
    poll = poller(slurm, folder)
    write_snapshot(poll, time.time() - 1, {"11": "RUNNING"})
    slurm.queue = {"11": "RUNNING", "12": "PENDING"}
    assert poll.status(["12"], max_age=30) == {}
    assert slurm.transport.calls == []
    assert poll.status(["12"], max_age=0.5)["12"].state is JobState.PENDING
    assert slurm.count("squeue") == 1


def test_a_job_gone_from_a_later_snapshot_is_asked_of_sacct(slurm: FakeSlurm, folder: Path) -> None:
    poll = poller(slurm, folder)
    slurm.queue = {"11": "RUNNING"}
    poll.status(["11"], max_age=30)
    slurm.queue, slurm.accounting = {}, {"11": "COMPLETED"}
    ended = poll.status(["11"], max_age=0)["11"]
    assert (ended.state, ended.exit_code) == (JobState.COMPLETED, 0)
    assert (slurm.count("squeue"), slurm.count("sacct")) == (2, 1)


def test_jobs_shown_ended_need_no_fresher_snapshot(slurm: FakeSlurm, folder: Path) -> None:
    """An ended job stays ended: only its exit code is still to come, from sacct."""
    poll = poller(slurm, folder)
    slurm.queue = {"11": "RUNNING"}
    poll.status(["11"], max_age=30)
    write_snapshot(poll, time.time() - 60, {"11": "COMPLETED"})
    slurm.accounting = {"11": "COMPLETED"}
    assert poll.status(["11"], max_age=30)["11"].exit_code == 0
    assert (slurm.count("squeue"), slurm.count("sacct")) == (1, 1)
    assert poll.next_poll(30) == 30  # a whole interval, not a busy loop


def test_next_poll_is_when_the_snapshot_turns_stale(slurm: FakeSlurm, folder: Path) -> None:
    poll = poller(slurm, folder)
    poll.status(["11"], max_age=5)
    assert 4 < poll.next_poll(5) <= 5


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff not json",
        b'{"format": 1, "taken": 17963',  # truncated
        b'{"format": 1, "taken": "soon", "jobs": []}',
        b'{"format": 1, "taken": 1.0, "jobs": [{"job_id": "11", "state": "BOGUS"}]}',
        b'{"format": 1, "taken": 1.0, "jobs": {"11": "RUNNING"}}',
        b'{"format": 99, "taken": 1.0, "jobs": []}',
        b"[]",
    ],
)
def test_an_unreadable_snapshot_is_ignored_and_rewritten(
    slurm: FakeSlurm, folder: Path, content: bytes
) -> None:
    poll = poller(slurm, folder)
    poll.path.write_bytes(content)
    slurm.queue = {"11": "RUNNING"}
    assert poll.status(["11"], max_age=30)["11"].state is JobState.RUNNING
    rewritten = json.loads(poll.path.read_text())
    assert [row["job_id"] for row in rewritten["jobs"]] == ["11"]


@pytest.fixture
def held_lock(folder: Path, slurm: FakeSlurm) -> Iterator[SharedPoll]:
    """Another process's refresh in progress: the snapshot's lock is taken."""
    poll = poller(slurm, folder)
    descriptor = os.open(poll.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield poll
    finally:
        os.close(descriptor)


def test_a_refresh_in_progress_is_waited_for_not_repeated(
    held_lock: SharedPoll, slurm: FakeSlurm
) -> None:
    write_snapshot(held_lock, time.time() - 60, {"11": "PENDING"})
    refreshed = threading.Timer(
        0.2, lambda: write_snapshot(held_lock, time.time(), {"11": "RUNNING"})
    )
    refreshed.start()
    assert held_lock.status(["11"], max_age=30)["11"].state is JobState.RUNNING
    refreshed.join()
    assert slurm.count("squeue") == 0


def test_a_refresh_that_takes_too_long_leaves_the_stale_snapshot(
    held_lock: SharedPoll, slurm: FakeSlurm
) -> None:
    write_snapshot(held_lock, time.time() - 60, {"11": "PENDING"})
    assert held_lock.status(["11"], max_age=30)["11"].state is JobState.PENDING
    assert slurm.count("squeue") == 0


def test_the_snapshot_is_private_and_per_site(
    slurm: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "hpcbridge").mkdir(mode=0o755)  # left open by someone: closed again
    slurm.queue = {"11": "RUNNING"}
    first = SharedPoll(SlurmBackend(slurm.transport), "alpha")
    other = SharedPoll(SlurmBackend(slurm.transport), "beta/gamma")
    first.status(["11"], max_age=30)
    other.status(["11"], max_age=30)
    assert slurm.count("squeue") == 2
    assert first.path.parent == tmp_path / "hpcbridge"
    assert sorted(path.name for path in first.path.parent.iterdir()) == [
        "status-alpha.json",
        "status-alpha.lock",
        "status-beta%2Fgamma.json",
        "status-beta%2Fgamma.lock",
    ]
    assert (first.path.parent.stat().st_mode & 0o777) == 0o700
    for path in first.path.parent.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600, path


def test_without_a_runtime_dir_the_folder_is_private_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    folder = cache_directory()
    assert folder == tmp_path / f"hpcbridge-{os.getuid()}"
    assert (folder.stat().st_mode & 0o777) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="handing a folder to another user takes root")
def test_a_folder_another_user_owns_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    planted = tmp_path / "hpcbridge"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(ConfigError, match="not a folder of this user"):
        cache_directory()


def test_the_cluster_uses_it_when_asked_or_told_by_the_environment(
    slurm: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    site = SiteConfig(name="fake", scheduler="slurm")
    slurm.queue = {"11": "COMPLETED"}
    slurm.accounting = {"11": "COMPLETED"}
    monkeypatch.setenv("HPCBRIDGE_SHARED_POLL", "1")
    assert Cluster(site, transport=slurm.transport).shared_poll
    monkeypatch.delenv("HPCBRIDGE_SHARED_POLL")
    cluster = Cluster(site, transport=slurm.transport)
    assert not cluster.shared_poll
    assert cluster.wait("11", shared_poll=True)["11"].exit_code == 0
    assert cluster.status("11", max_age=30)["11"].state is JobState.COMPLETED  # off: direct
    commands = [call.argv[0] for call in slurm.transport.calls]
    assert commands == ["squeue", "sacct", "squeue", "sacct"]
    assert "--me" in slurm.transport.calls[0].argv
    assert "--jobs=11" in slurm.transport.calls[2].argv


def test_a_snapshot_that_cannot_be_written_still_answers(
    slurm: FakeSlurm, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    poll = poller(slurm, folder)
    poll.path.mkdir()  # in the way of the file
    slurm.queue = {"11": "RUNNING"}
    assert poll.status(["11"], max_age=30)["11"].state is JobState.RUNNING
    assert "could not write the status snapshot" in caplog.text


def test_a_folder_gone_is_said_as_such(slurm: FakeSlurm, folder: Path) -> None:
    poll = poller(slurm, folder)
    folder.rmdir()  # the runtime folder went with the login session
    with pytest.raises(ConfigError, match=r"cannot open .*status-fake\.lock"):
        poll.status(["11"], max_age=30)
