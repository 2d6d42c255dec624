"""The checkpoint wrapper run by plain bash (no scheduler), and the Python side that reads it.

Scripts are rendered for the local backend, whose template adds no directives, and run with
``bash`` in a new session, as a batch shell is; HPCBRIDGE_JOB_ID stands in for the scheduler's
job id, and SIGUSR1 sent by the test for the warning before the time limit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rendering import check_golden, hostile_text, render_pbs

from hpcbridge import Cluster, JobSpec, JobState, SpecError
from hpcbridge.backends.local.backend import LocalBackend
from hpcbridge.backends.slurm import SlurmBackend
from hpcbridge.errors import CheckpointError
from hpcbridge.jobs.checkpoint import (
    attempt_history,
    is_finished,
    latest_valid,
    list_checkpoints,
    read_events,
)
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.rendering import Renderer
from hpcbridge.transports import FakeTransport

pytestmark = pytest.mark.timeout(60)

# A counter that saves its progress in ./state every 0.1 s; the checkpoint copies that file,
# the restart continues from the copy. Output: "start 0" or "resume N", then "done N".
# The state is replaced by rename, as a real job's must be: a checkpoint copying a file that
# is being rewritten in place can catch it empty (seen under load: "resumed at " nothing).
COUNT = (
    'i=${START:-0}; echo "start $i"; '
    "while [ $i -lt $LAST ]; do i=$((i+1)); echo $i > state.new; mv -f state.new state; "
    'sleep 0.1; done; echo "done $i"'
)
RESTART = 'START=$(cat "$HPCBRIDGE_CHECKPOINT/state"); echo "resume $START"; ' + COUNT.replace(
    'echo "start $i"; ', ""
)


def counter_spec(**checkpoint: Any) -> dict[str, Any]:
    return {
        "name": "counter",
        "command": COUNT,
        "env": {"LAST": "30"},
        "checkpoint": {
            "command": 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"',
            "restart": RESTART,
            "directory": "ck",
            **checkpoint,
        },
    }


def render_local(spec: dict[str, Any]) -> str:
    backend = LocalBackend(FakeTransport(lambda argv, stdin: ""), state_dir="/nonexistent")
    job = JobSpec.parse(spec)
    return Renderer().render(backend.template, job, token=None, **backend.template_context(job))


def render_slurm(spec: dict[str, Any]) -> str:
    backend = SlurmBackend(FakeTransport(lambda argv, stdin: ""))
    job = JobSpec.parse(spec)
    return Renderer().render(backend.template, job, token=None, **backend.template_context(job))


def progress(folder: Path) -> int:
    """The counter's saved progress; 0 while the file is missing or being rewritten."""
    try:
        return int((folder / "state").read_text() or 0)
    except FileNotFoundError:
        return 0


class Run:
    """One run of a rendered script in ``folder``, as its own session (like a batch shell)."""

    def __init__(self, folder: Path, spec: dict[str, Any], job_id: str = "41") -> None:
        (folder / "job.sh").write_text(render_local(spec))
        self.out = (folder / "out").open("w")
        self.err_path = folder / "err"
        self.err = self.err_path.open("w")
        self.process = subprocess.Popen(
            ["bash", "job.sh"],
            cwd=folder,
            env={**os.environ, "HPCBRIDGE_JOB_ID": job_id},
            stdout=self.out,
            stderr=self.err,
            start_new_session=True,
        )
        self.folder = folder

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.out.close()
            self.err.close()
        return code, (self.folder / "out").read_text(), self.err_path.read_text()


def run(folder: Path, spec: dict[str, Any], job_id: str = "41") -> tuple[int, str, str]:
    return Run(folder, spec, job_id).finish()


def wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def checkpoint_dirs(folder: Path) -> list[str]:
    if not (folder / "ck").is_dir():
        return []
    return sorted(p.name for p in (folder / "ck").iterdir() if p.is_dir())


def test_periodic_checkpoints_are_committed_with_manifests_and_pruned(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, counter_spec(interval="0:01", keep=2))
    assert code == 0, err
    assert out.splitlines() == ["start 0", "done 30"]
    names = checkpoint_dirs(tmp_path)
    assert len(names) == 2
    assert all(name.startswith("ckpt-") for name in names)
    checkpoints = list_checkpoints(tmp_path / "ck")
    assert [c.name for c in checkpoints] == sorted(names, reverse=True)
    assert all(c.valid and c.reason == "periodic" and c.job_id == "41" for c in checkpoints)
    commits = [e for e in read_events(tmp_path / "ck") if e.kind == "commit"]
    assert len(commits) >= 2  # 3 s of work, a checkpoint a second; older ones pruned
    assert commits[-1].fields[0] == checkpoints[0].name
    assert latest_valid(tmp_path / "ck").name == checkpoints[0].name


def test_limit_signal_checkpoints_then_exits_and_the_rerun_resumes(tmp_path: Path) -> None:
    spec = counter_spec(on_limit="exit")
    first = Run(tmp_path, spec)
    wait_for(lambda: progress(tmp_path) >= 5)
    first.process.send_signal(signal.SIGUSR1)
    code, out, err = first.finish()
    assert code == 0, err
    assert "done" not in out  # the work was stopped after the checkpoint
    assert "time limit is near; checkpointing" in err
    (saved,) = list_checkpoints(tmp_path / "ck")
    assert saved.valid
    assert saved.reason == "limit"
    assert saved.attempt == 1
    saved_progress = progress(saved.path)
    assert saved_progress >= 5
    # The work runs on while the checkpoint is copied (more steps under load), and stops with
    # the job: after the exit nothing counts on.
    at_exit = progress(tmp_path)
    assert at_exit >= saved_progress
    time.sleep(0.3)
    assert progress(tmp_path) == at_exit

    code, out, err = run(tmp_path, spec)
    assert code == 0, err
    assert out.splitlines() == [f"resume {saved_progress}", "done 30"]
    starts = [e for e in read_events(tmp_path / "ck") if e.kind == "start"]
    assert [(e.attempt, e.fields[0]) for e in starts] == [(1, "-"), (2, saved.name)]
    assert f"attempt 2 resumes from {saved.name}" in err


def make_checkpoints(folder: Path, count: int) -> list[str]:
    """``count`` committed checkpoints of state 10, 20, ... by runs stopped at the limit."""
    spec = counter_spec(on_limit="exit", keep=count, max_restarts=100)
    del spec["checkpoint"]["restart"]  # every run writes its own state
    for number in range(1, count + 1):
        target = 10 * number
        run_ = Run(folder, {**spec, "command": f"echo {target} > state; touch started; sleep 30"})
        wait_for((folder / "started").exists)
        (folder / "started").unlink()
        run_.process.send_signal(signal.SIGUSR1)
        assert run_.finish()[0] == 0
    return checkpoint_dirs(folder)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_corrupted_latest_checkpoint_is_kept_aside_and_the_previous_one_used(
    tmp_path: Path,
) -> None:
    older, newest = make_checkpoints(tmp_path, 2)
    flip_a_byte(tmp_path / "ck" / newest / "state")
    assert [c.valid for c in list_checkpoints(tmp_path / "ck")] == [False, True]
    assert latest_valid(tmp_path / "ck").name == older

    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "resume 10"
    assert f"checkpoint {newest} is corrupt: ./state: missing, changed or outside" in err
    assert f"resumes from {older}" in err
    assert f"corrupt-{newest}" in checkpoint_dirs(tmp_path)  # kept for inspection, not deleted
    corrupt = [c for c in list_checkpoints(tmp_path / "ck") if not c.valid]
    assert [c.name for c in corrupt] == [f"corrupt-{newest}"]


def test_a_missing_file_or_manifest_makes_a_checkpoint_invalid(tmp_path: Path) -> None:
    older, newest = make_checkpoints(tmp_path, 2)
    (tmp_path / "ck" / newest / "state").unlink()
    (tmp_path / "ck" / older / ".hpcbridge-manifest").unlink()
    problems = [c.problem for c in list_checkpoints(tmp_path / "ck")]
    assert problems[0] is not None
    assert "state" in problems[0]
    assert problems[1] is not None
    assert "manifest" in problems[1]
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        latest_valid(tmp_path / "ck")
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "start 0"  # no valid checkpoint: the first-run command
    assert "found no valid checkpoint; starting afresh" in err


def test_a_partial_checkpoint_left_by_a_dead_run_is_ignored_and_cleared(tmp_path: Path) -> None:
    (_older,) = make_checkpoints(tmp_path, 1)
    partial = tmp_path / "ck" / ".tmp-abc123"
    partial.mkdir()
    (partial / "state").write_text("999\n")
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "resume 10"
    assert "removing .tmp-abc123" in err
    assert not partial.exists()


def test_a_failing_checkpoint_command_leaves_no_checkpoint(tmp_path: Path) -> None:
    spec = counter_spec(on_limit="exit")
    spec["checkpoint"]["command"] = 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"; exit 7'
    first = Run(tmp_path, spec)
    wait_for((tmp_path / "state").exists)
    first.process.send_signal(signal.SIGUSR1)
    code, _, err = first.finish()
    assert code == 0
    assert "the checkpoint command failed (exit 7); no checkpoint taken" in err
    assert checkpoint_dirs(tmp_path) == []


def test_a_checkpoint_killed_halfway_leaves_only_a_temp_dir(tmp_path: Path) -> None:
    spec = counter_spec(interval="0:01")
    spec["checkpoint"]["command"] = 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"; touch copying; sleep 30'
    first = Run(tmp_path, spec)
    wait_for((tmp_path / "copying").exists)
    os.killpg(first.process.pid, signal.SIGKILL)  # the node dies mid-checkpoint
    first.finish()
    left = checkpoint_dirs(tmp_path)  # the lock, and the copy being written
    assert len(left) == 2
    assert left[0] == ".lock"
    assert left[1].startswith(".tmp-")
    assert list_checkpoints(tmp_path / "ck") == []


def test_max_restarts_refuses_another_run(tmp_path: Path) -> None:
    spec = counter_spec(max_restarts=1)
    spec["command"] = "exit 5"  # fails, so the work is never finished
    assert run(tmp_path, spec)[0] == 5
    assert run(tmp_path, spec)[0] == 5
    code, out, err = run(tmp_path, spec)
    assert code == 3
    assert out == ""
    assert "job 41 already ran 2 times; max_restarts is 1, so it will not start again" in err
    assert [e.kind for e in read_events(tmp_path / "ck")] == ["start", "start", "refused"]
    assert run(tmp_path, spec, job_id="42")[0] == 5  # another job id counts its own runs


def test_finished_work_is_not_run_again(tmp_path: Path) -> None:
    spec = counter_spec()
    spec["env"] = {"LAST": "3"}
    assert run(tmp_path, spec)[0] == 0
    assert is_finished(tmp_path / "ck")
    assert (tmp_path / "ck" / "finished").read_text().startswith("job 41 attempt 1 at ")
    code, out, err = run(tmp_path, spec, job_id="43")
    assert code == 0
    assert out == ""
    assert "is finished (job 41 attempt 1 at" in err
    assert [e.kind for e in read_events(tmp_path / "ck")] == ["start", "finished"]


def test_without_a_restart_command_the_job_command_sees_the_checkpoint(tmp_path: Path) -> None:
    spec = counter_spec(on_limit="exit")
    del spec["checkpoint"]["restart"]
    spec["command"] = 'echo "from ${HPCBRIDGE_CHECKPOINT:-nothing}"; echo 5 > state; sleep 30'
    first = Run(tmp_path, spec)
    wait_for((tmp_path / "state").exists)
    first.process.send_signal(signal.SIGUSR1)
    assert first.finish()[0] == 0
    (saved,) = checkpoint_dirs(tmp_path)
    second = Run(tmp_path, spec)
    wait_for(lambda: "from " in (tmp_path / "out").read_text())
    second.process.send_signal(signal.SIGUSR1)
    _, out, _ = second.finish()
    assert out == f"from {tmp_path / 'ck' / saved}\n"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_checkpoint_directories_are_used_as_written(
    tmp_path: Path, data: st.DataObject
) -> None:
    canary = tmp_path / "canary"
    # Line breaks and NUL are refused (test_spec); everything else is used as written.
    refused = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
    text = data.draw(hostile_text(canary).filter(lambda v: not refused.search(v)))
    value = text.replace("/", "_")[:60]  # one path component, within NAME_MAX
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    spec = {
        "name": "h",
        "command": "echo 1 > state",
        "checkpoint": {"command": "true", "directory": "d/" + value},
    }
    code, _, err = run(folder, spec)
    assert code == 0, err
    assert (folder / "d" / value / "attempts.log").is_file()
    assert not canary.exists()


CHECKPOINT_SPEC: dict[str, Any] = {
    "name": "ckpt-job",
    "command": './simulate --resume-from "${HPCBRIDGE_CHECKPOINT:-}"',
    "resources": {"walltime": "2:00:00"},
    "checkpoint": {
        "command": 'kill -USR2 "$HPCBRIDGE_WORK_PID"; sleep 5; cp *.h5 "$HPCBRIDGE_CHECKPOINT_TMP"',
        "restart": './simulate --state "$HPCBRIDGE_CHECKPOINT/state.h5"',
        "directory": "/scratch/run 1/checkpoints",
        "signal": "USR1@300",
        "interval": "1:00:00",
        "keep": 2,
        "max_restarts": 5,
    },
}


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("slurm_checkpoint.sh", render_slurm),
        ("pbs_checkpoint.sh", render_pbs),
        ("local_checkpoint.sh", render_local),
    ],
)
def test_checkpoint_golden(name: str, render: Any) -> None:
    script = render(CHECKPOINT_SPEC)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    check_golden(name, script)


def test_checkpointed_jobs_are_requeueable_and_signalled_before_the_limit() -> None:
    slurm = render_slurm(CHECKPOINT_SPEC)
    assert "#SBATCH --requeue\n" in slurm
    assert "#SBATCH --signal=B:USR1@300\n" in slurm
    assert 'scontrol requeue "$SLURM_JOB_ID"' in slurm
    pbs = render_pbs(CHECKPOINT_SPEC)
    assert "#PBS -r y\n" in pbs
    assert "( sleep 6900 && kill -s USR1 $$ ) &" in pbs
    assert 'qrerun "$PBS_JOBID"' in pbs
    leaving = {
        **CHECKPOINT_SPEC,
        "checkpoint": {**CHECKPOINT_SPEC["checkpoint"], "on_limit": "exit"},
    }
    assert "hpcbridge_requeue;" not in render_slurm(leaving).split("hpcbridge_ck_at_limit()")[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signal": "USR2@60"}, "checkpoint wrapper owns the warning signal"),
        ({"requeue": False}, "requeue is false but checkpoint.on_limit is requeue"),
        ({"checkpoint": {"command": " ", "directory": "d"}}, "checkpoint.command: must not be"),
        ({"checkpoint": {"command": "x", "directory": "a\nb"}}, "checkpoint.directory"),
        ({"checkpoint": {"command": "x", "directory": "d", "keep": 0}}, "checkpoint.keep"),
        ({"checkpoint": {"command": "x", "directory": "d", "on_limit": "x"}}, "on_limit"),
        ({"checkpoint": {"command": "x", "directory": "d", "signal": "NOPE"}}, "not a signal"),
    ],
)
def test_bad_checkpoint_sections_are_refused_by_field(change: dict[str, Any], message: str) -> None:
    spec = {"name": "x", "command": "true", "checkpoint": {"command": "c", "directory": "d"}}
    with pytest.raises(SpecError, match=message):
        JobSpec.parse({**spec, **change})


def test_checkpoint_defaults_and_signal_spelling() -> None:
    job = JobSpec.parse(
        {
            "name": "x",
            "command": "true",
            "checkpoint": {"command": "c", "directory": "d", "signal": "USR2@90"},
        }
    )
    assert job.checkpoint is not None
    assert job.checkpoint.signal.batch_shell
    assert job.checkpoint.signal.seconds == 90
    assert job.warning_signal == job.checkpoint.signal
    assert job.requeue_flag is True
    assert job.requeue is None
    assert (job.checkpoint.keep, job.checkpoint.max_restarts, job.checkpoint.on_limit) == (
        3,
        10,
        "requeue",
    )
    assert JobSpec.parse({"name": "x", "command": "true"}).requeue_flag is None


def _at(seconds: float) -> datetime:
    return datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def test_attempt_history_measures_lost_work_and_recovery(tmp_path: Path) -> None:
    epoch = int(_at(0).timestamp())
    log = [
        f"start\t{epoch + 1}\t7\t1\tvm\t-\t-",
        f"commit\t{epoch + 60}\t7\t1\tvm\tckpt-a-000001\t{epoch + 60}\tperiodic",
        f"commit\t{epoch + 120}\t7\t1\tvm\tckpt-a-000002\t{epoch + 120}\tperiodic",
        f"start\t{epoch + 300}\t7\t2\tvm\tckpt-a-000002\t{epoch + 120}",
        f"commit\t{epoch + 330}\t7\t2\tvm\tckpt-a-000003\t{epoch + 330}\tlimit",
    ]
    (tmp_path / "attempts.log").write_text("\n".join(log) + "\n")
    runs = [
        AttemptRecord("7", 1, JobState.NODE_FAIL, start=_at(0), end=_at(150), node_list="vm"),
        AttemptRecord("7", 2, JobState.REQUEUED, start=_at(299), end=_at(331)),
        AttemptRecord("7", 3, JobState.COMPLETED, start=_at(500), end=_at(600)),
    ]
    first, second, third = attempt_history(tmp_path, runs)
    assert (first.lost_work_s, first.recovery_s, first.checkpoints) == (30.0, 149.0, 2)
    assert first.resumed_from is None
    assert (second.resumed_from, second.lost_work_s, second.recovery_s) == (
        "ckpt-a-000002",
        1.0,
        169.0,
    )
    assert (third.lost_work_s, third.recovery_s, third.resumed_from) == (None, None, None)


def test_cli_lists_and_verifies_checkpoints(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hpcbridge.cli.main import main

    older, newest = make_checkpoints(tmp_path, 2)
    flip_a_byte(tmp_path / "ck" / newest / "state")
    runner = CliRunner()
    listed = runner.invoke(main, ["checkpoint", "list", str(tmp_path / "ck"), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(c["name"], c["valid"]) for c in json.loads(listed.output)] == [
        (newest, False),
        (older, True),
    ]
    verified = runner.invoke(main, ["checkpoint", "verify", str(tmp_path / "ck")])
    assert verified.exit_code == 0
    assert verified.stdout.strip() == str(tmp_path / "ck" / older)
    flip_a_byte(tmp_path / "ck" / older / "state")
    refused = runner.invoke(main, ["checkpoint", "verify", str(tmp_path / "ck")])
    assert refused.exit_code == 9
    assert "no valid checkpoint" in refused.output


def test_local_backend_warns_the_wrapper_which_checkpoints_and_exits(
    local_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"  # beside the fixture's own tmp_path/state
    work.mkdir()
    monkeypatch.chdir(work)
    spec = counter_spec(on_limit="exit", signal="USR1@4")
    spec["env"] = {"LAST": "1000"}
    spec["resources"] = {"walltime": "0:06"}
    job_id = local_cluster.submit(spec)
    info = local_cluster.wait(job_id, timeout=30)[job_id]
    assert info.state is JobState.COMPLETED  # ended by the wrapper, before the time limit
    (saved,) = list_checkpoints(work / "ck")
    assert saved.reason == "limit"
    assert saved.job_id == job_id
    assert progress(saved.path) >= 5


def test_the_wrapper_works_under_strict_mode_setup(tmp_path: Path) -> None:
    spec = counter_spec(on_limit="exit", interval="0:01")
    spec["setup"] = ["set -euo pipefail"]
    first = Run(tmp_path, spec)
    wait_for(lambda: len(checkpoint_dirs(tmp_path)) >= 1 and progress(tmp_path) >= 15)
    first.process.send_signal(signal.SIGUSR1)
    code, _, err = first.finish()
    assert code == 0, err
    saved = latest_valid(tmp_path / "ck")
    assert saved.reason == "limit"
    code, out, err = run(tmp_path, spec)
    assert code == 0, err
    assert out.splitlines() == [f"resume {progress(saved.path)}", "done 30"]
