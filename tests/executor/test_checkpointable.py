"""Checkpointable functions, the mechanism without a scheduler: the executor's Slurm job script
run by plain bash, as a batch shell is, with SIGUSR1 sent by the test for the warning before
the time limit and an ``scontrol`` on PATH that only notes the requeue. Each run of the script
is one run of the job; the real requeue is tested on Slurm and the PBS emulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from slow_sum import SlowSum, expected, reached

from hpcbridge import Cluster, JobInfo, JobState, SiteConfig, SpecError
from hpcbridge.errors import RestartsExhausted
from hpcbridge.executor import Resubmission, checkpointing, outcome
from hpcbridge.executor.pool import ClusterExecutor
from hpcbridge.jobs.checkpoint import list_checkpoints, read_events
from hpcbridge.transports import FakeTransport

pytestmark = pytest.mark.timeout(120)
JOB_ID = "77"
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class FaultyCheckpoint(SlowSum):
    def checkpoint(self, n: int) -> Resubmission:
        raise ValueError(f"cannot save a sum of {n}")


class Job:
    """The script of one executor call, captured at sbatch, and its runs."""

    def __init__(self, folder: Path, script: str) -> None:
        self.folder = folder
        self.script = folder / "job.sh"
        self.script.write_text(script)
        fake = folder / "bin"
        fake.mkdir()
        (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {folder / "scontrol.log"}\n')
        (fake / "scontrol").chmod(0o755)
        self.env = {**os.environ, "SLURM_JOB_ID": JOB_ID, "PATH": f"{fake}:{os.environ['PATH']}"}

    def start(self) -> subprocess.Popen[bytes]:
        with (self.folder / "out").open("ab") as out:
            return subprocess.Popen(
                ["bash", str(self.script)],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def requeues(self) -> list[str]:
        log = self.folder / "scontrol.log"
        return log.read_text().splitlines() if log.exists() else []


def finish(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def submit(tmp_path: Path) -> Iterator[Callable[..., tuple[ClusterExecutor, Job, Path]]]:
    """Submit one call through an executor on a Slurm site whose sbatch is captured. Its
    squeue refuses, so the poller gives the call up at once and leaves its folder alone."""
    scripts: list[str] = []

    def slurm(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        if argv[0] == "sbatch":
            scripts.append(stdin or "")
            return 0, f"{JOB_ID}\n", ""
        if argv[0] == "scontrol":
            return 0, "MaxArraySize = 1001\n", ""
        return 1, "", f"{argv[0]}: error: Invalid user id"

    cluster = Cluster(SiteConfig.load("test-slurm"), transport=FakeTransport(slurm))
    executors: list[ClusterExecutor] = []

    def submitted(fn: Any, *args: Any, **checkpoint: Any) -> tuple[ClusterExecutor, Job, Path]:
        executor = cluster.executor(
            root=tmp_path / "tasks", resources={"walltime": "10:00"}, checkpoint=checkpoint
        )
        executors.append(executor)
        executor.submit(fn, *args)
        (folder,) = [path for path in executor.folder.iterdir() if path.is_dir()]
        return executor, Job(tmp_path, scripts[-1]), folder

    yield submitted
    for executor in executors:
        executor.shutdown(wait=False)


def test_at_the_warning_the_call_is_checkpointed_requeued_and_resumed(
    submit: Callable[..., tuple[ClusterExecutor, Job, Path]], tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    n = 40
    _, job, folder = submit(SlowSum(0.1, progress), n, signal="USR1@60")
    assert "#SBATCH --signal=B:USR1@60" in job.script.read_text()
    assert "#SBATCH --requeue" in job.script.read_text()

    first = job.start()
    wait_for(lambda: reached(progress) > 5)
    first.send_signal(signal.SIGUSR1)  # to the batch shell only, as --signal=B: does
    assert finish(first) == 0
    stopped_at = reached(progress)
    assert job.requeues() == [f"requeue {JOB_ID}"]
    assert not outcome.result_exists(folder)
    (saved,) = list_checkpoints(folder / checkpointing.CHECKPOINTS)
    assert saved.valid
    assert saved.reason == "limit"
    assert (saved.path / "call.pkl").is_file()

    assert finish(job.start()) == 0
    assert outcome.returned(JOB_ID, folder) == (expected(n), 2)
    starts = [e for e in read_events(folder / checkpointing.CHECKPOINTS) if e.kind == "start"]
    assert [e.fields[0] for e in starts] == ["-", saved.name]
    # It went on from the checkpoint, not from 1: the second run added only what was left.
    assert 5 < stopped_at < n
    assert "resumes from" in (tmp_path / "out").read_text()


def test_a_killed_run_resumes_from_the_last_periodic_checkpoint(
    submit: Callable[..., tuple[ClusterExecutor, Job, Path]], tmp_path: Path
) -> None:
    # A preemption or node failure gives no warning: what is left is the last periodic
    # checkpoint, taken while the function ran on.
    progress = tmp_path / "progress"
    n = 60
    _, job, folder = submit(SlowSum(0.1, progress), n, signal="USR1@60", interval="0:01")
    first = job.start()
    checkpoints = folder / checkpointing.CHECKPOINTS
    wait_for(lambda: len([e for e in read_events(checkpoints) if e.kind == "commit"]) >= 2)
    os.killpg(first.pid, signal.SIGKILL)
    finish(first)
    killed_at = reached(progress)
    assert killed_at < n

    assert finish(job.start()) == 0
    assert outcome.returned(JOB_ID, folder) == (expected(n), 2)
    assert all(c.reason == "periodic" for c in list_checkpoints(checkpoints))
    assert job.requeues() == []


def test_a_run_past_max_restarts_is_refused_and_raised_as_restarts_exhausted(
    submit: Callable[..., tuple[ClusterExecutor, Job, Path]], tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    _, job, folder = submit(SlowSum(0.1, progress), 1000, signal="USR1@60", max_restarts=0)
    first = job.start()
    wait_for(lambda: reached(progress) > 2)
    first.send_signal(signal.SIGUSR1)
    assert finish(first) == 0
    assert finish(job.start()) == 3  # the wrapper's refusal

    error = outcome.no_result(JOB_ID, folder, JobInfo(job_id=JOB_ID, state=JobState.FAILED))
    assert isinstance(error, RestartsExhausted)
    assert (error.restarts, error.max_restarts) == (1, 0)
    assert "requeued 1 times without finishing" in str(error)
    assert "max_restarts (0)" in str(error)


def test_a_failing_checkpoint_is_the_calls_outcome_and_a_rerun_ends_at_once(
    submit: Callable[..., tuple[ClusterExecutor, Job, Path]], tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    _, job, folder = submit(FaultyCheckpoint(0.1, progress), 1000, signal="USR1@60")
    first = job.start()
    wait_for(lambda: reached(progress) > 2)
    first.send_signal(signal.SIGUSR1)
    assert finish(first) == 0
    assert job.requeues() == [f"requeue {JOB_ID}"]  # the wrapper requeues at the limit anyway
    with pytest.raises(ValueError, match="cannot save a sum of 1000") as caught:
        outcome.returned(JOB_ID, folder)
    assert "raised by FaultyCheckpoint.checkpoint" in "\n".join(caught.value.__notes__)

    assert finish(job.start()) == 0
    assert "has its result already" in (folder / "stderr").read_text()
    assert reached(progress) < 1000


def test_map_of_a_checkpointable_function_submits_a_job_per_call(tmp_path: Path) -> None:
    scripts: list[str] = []

    def slurm(argv: list[str], stdin: str | None) -> str:
        if argv[0] == "sbatch":
            scripts.append(stdin or "")
            return f"{100 + len(scripts)}\n"
        return "MaxArraySize = 1001\n" if argv[0] == "scontrol" else ""

    cluster = Cluster(SiteConfig.load("test-slurm"), transport=FakeTransport(slurm))
    executor = cluster.executor(root=tmp_path, resources={"walltime": "10:00"})
    try:
        executor.map(SlowSum(0.1), [1, 2, 3])
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    assert len(scripts) == 3
    assert not any("--array" in script for script in scripts)
    folders = [executor.folder / str(number) for number in range(3)]
    for script, folder in zip(scripts, folders, strict=True):
        assert f"hpcbridge_ck_dir={folder / checkpointing.CHECKPOINTS}\n" in script


def test_the_local_backend_refuses_a_checkpointable_function(tmp_path: Path) -> None:
    with (
        Cluster.local(state_dir=tmp_path / "state") as local,
        local.executor(root=tmp_path / "tasks") as executor,
    ):
        with pytest.raises(SpecError, match="a local job cannot requeue itself"):
            executor.submit(SlowSum(0.1), 3)
        assert executor.submit(pow, 2, 5).result(timeout=60) == 32  # a plain call still runs


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"checkpoint": {"command": "cp x y"}}, "checkpoint: command: the executor sets"),
        ({"checkpoint": {"max_restarts": -1}}, "max_restarts"),
        (
            {"signal": "B:USR1@30", "checkpoint": {"signal": "USR1@90"}},
            "the checkpoint wrapper owns the warning signal",
        ),
    ],
)
def test_bad_checkpoint_settings_are_refused_when_the_executor_is_made(
    defaults: dict[str, Any], message: str, tmp_path: Path
) -> None:
    cluster = Cluster(SiteConfig.load("test-slurm"), transport=FakeTransport(lambda a, s: ""))
    with pytest.raises(SpecError, match=message):
        ClusterExecutor(cluster, root=tmp_path, **defaults)


def test_resubmission_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        Resubmission(42)  # type: ignore[arg-type]
    call = Resubmission(sys.exit, 3, code=4)
    assert (call.fn, call.args, call.kwargs) == (sys.exit, (3,), {"code": 4})
