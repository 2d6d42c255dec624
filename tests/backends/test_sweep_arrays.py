"""submit_many per scheduler: the array size limit read once, the scheduler calls it takes,
%N, and what a sweep refused half-way says."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import (
    Cluster,
    CommandResult,
    FakeTransport,
    JobState,
    LocalTransport,
    RecordingTransport,
    SiteConfig,
    SpecError,
    SubmitError,
)
from hpcbridge.backends.slurm import parse
from hpcbridge.ledger.sources.base import Window
from hpcbridge.ledger.sources.slurm import SacctSource

pytestmark = pytest.mark.timeout(180)


def sweep(name: str, workdir: Path, items: int, **fields: object) -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "command": 'echo "$ITEM"',
            "workdir": str(workdir),
            "stdout": f"{name}-%A_%a.out",
            "env": {"ITEM": str(item)},
            **fields,
        }
        for item in range(items)
    ]


@pytest.mark.slurm
def test_slurm_reads_max_array_size_once_and_submits_one_sbatch_per_array(workdir: Path) -> None:
    transport = RecordingTransport(LocalTransport())
    name = f"sweep-calls-{time.time_ns()}"
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        ids = cluster.submit_many(sweep(name, workdir, 10, hold=True), max_array_size=4, limit=2)
        more = cluster.submit_many(sweep(name, workdir, 3, hold=True))
        try:
            assert transport.count("sbatch") == 3 + 1  # 10 by 4: 4, 3, 3; then 3 in one
            shows = [
                argv for argv in transport.commands if argv[:3] == ["scontrol", "show", "config"]
            ]
            assert len(shows) == 1  # asked once per Cluster
            arrays = sorted({job_id.partition("_")[0] for job_id in ids})
            shown = subprocess.run(
                ["scontrol", "show", "job", arrays[0]], capture_output=True, text=True, check=True
            ).stdout
            assert "ArrayTaskThrottle=2" in shown
            assert [job_id.partition("_")[2] for job_id in ids] == [
                "0", "1", "2", "3", "0", "1", "2", "0", "1", "2"
            ]  # fmt: skip
        finally:
            cluster.cancel(sorted({job_id.partition("_")[0] for job_id in ids + more}))
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    )
    assert parse.parse_max_array_size(config.stdout) == int(
        next(line for line in config.stdout.splitlines() if line.startswith("MaxArraySize"))
        .partition("=")[2]
        .strip()
    )


@pytest.mark.slurm
def test_a_lost_sbatch_answer_finds_the_array_by_its_token(workdir: Path) -> None:
    """sbatch created the array but its answer was lost: the retry finds the array's own id
    (squeue's %i shows a pending array as "12_[0-2]"), so each job's id is a task's."""
    lost = {"done": False}

    def lose_first_answer(argv: list[str], result: CommandResult) -> CommandResult:
        if argv[0] == "sbatch" and not lost["done"]:
            lost["done"] = True
            return CommandResult(result.argv, 1, "", "sbatch: error: Socket timed out")
        return result

    transport = RecordingTransport(LocalTransport(), lose_first_answer)
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        cluster.backend.commands.backoff = 0.01  # type: ignore[attr-defined]
        ids = cluster.submit_many(sweep(f"sweep-lost-{time.time_ns()}", workdir, 3, hold=True))
        try:
            assert transport.count("sbatch") == 1
            assert all(re.fullmatch(r"\d+_\d", job_id) for job_id in ids), ids
            assert {info.state for info in cluster.status(ids).values()} == {JobState.PENDING}
        finally:
            cluster.cancel([ids[0].partition("_")[0]])


@pytest.mark.slurm
def test_slurm_sweep_items_are_array_tasks_in_accounting(workdir: Path) -> None:
    """Each item's ledger record comes from sacct as any array task's does: its own state
    and exit code, keyed by the array's id and the item's index."""
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    specs = sweep(f"sweep-ledger-{time.time_ns()}", workdir, 3)
    specs[1]["command"] = "exit 5"
    with Cluster.from_site("test-slurm") as cluster:
        ids = cluster.submit_many(specs)
        infos = cluster.wait(ids, timeout=120)
    assert [infos[job_id].exit_code for job_id in ids] == [0, 5, 0]
    array = ids[0].partition("_")[0]
    source = SacctSource(LocalTransport())
    deadline = time.monotonic() + 60
    while True:  # slurmdbd may store the last end record a moment after squeue shows it
        window = Window(began, datetime.now(UTC) + timedelta(seconds=1), True)
        found = {r.array_index: r for r in source.fetch(window) if r.job_id == array}
        if len(found) == 3 and all(r.end is not None for r in found.values()):
            break
        assert time.monotonic() < deadline, f"sacct never held the three tasks: {found}"
        time.sleep(0.5)
    assert [(found[i].state, found[i].exit_code) for i in range(3)] == [
        (JobState.COMPLETED, 0),
        (JobState.FAILED, 5),
        (JobState.COMPLETED, 0),
    ]


def test_pbs_splits_under_the_servers_max_array_size(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pbs_emulator.configure(max_array_size=3)
    transport = RecordingTransport(LocalTransport())
    with Cluster(SiteConfig.load("test-pbs"), transport=transport) as cluster:
        ids = cluster.submit_many(sweep("pbs-sweep", tmp_path, 7))
        infos = cluster.wait(ids, timeout=120)
    assert transport.count("qsub") == 3
    assert [argv for argv in transport.commands if argv[0] == "qstat" and "-B" in argv] == [
        ["qstat", "-B", "-f"]
    ]
    assert {info.state.value for info in infos.values()} == {"COMPLETED"}
    assert len({info.array_job_id for info in infos.values()}) == 3


def test_a_lost_qsub_answer_finds_the_array_not_a_subjob(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qsub created the array but its answer was lost: the retry finds the array ("12[]"),
    though its subjobs carry the same token, as qstat -t lists an array before its subjobs
    (pbs-reference qstat-t-f-F-json_array-with-subjobs.json); each job's id is its subjob's."""
    monkeypatch.chdir(tmp_path)
    lost = {"done": False}

    def lose_first_answer(argv: list[str], result: CommandResult) -> CommandResult:
        if argv[0] == "qsub" and not lost["done"]:
            lost["done"] = True
            return CommandResult(result.argv, 2, "", "Connection timed out\nqsub: cannot connect")
        return result

    transport = RecordingTransport(LocalTransport(), lose_first_answer)
    with Cluster(SiteConfig.load("test-pbs"), transport=transport) as cluster:
        cluster.backend.commands.backoff = 0.01  # type: ignore[attr-defined]
        ids = cluster.submit_many(sweep("pbs-lost", tmp_path, 3))
        infos = cluster.wait(ids, timeout=120)
    assert transport.count("qsub") == 1
    assert [re.sub(r"\..*", "", job_id).partition("[")[2] for job_id in ids] == ["0]", "1]", "2]"]
    assert {info.state for info in infos.values()} == {JobState.COMPLETED}


def test_a_sweep_refused_half_way_names_what_was_submitted(tmp_path: Path) -> None:
    """The second array is refused: the first stays, and the error says which jobs it holds
    (the whole list again would submit them twice)."""
    submitted: list[str] = []

    def slurm(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        if argv[:3] == ["scontrol", "show", "config"]:
            return 0, "MaxArraySize            = 3\n", ""
        if argv[0] == "sbatch":
            if submitted:
                return 1, "", "sbatch: error: Batch job submission failed: Invalid account"
            submitted.append(stdin or "")
            return 0, "100\n", ""
        return 0, "", ""

    cluster = Cluster(SiteConfig.load("test-slurm"), transport=FakeTransport(slurm))
    with pytest.raises(SubmitError) as caught:
        cluster.submit_many(sweep("half", tmp_path, 6))
    message = str(caught.value)
    assert "stopped after 3 of 6 jobs" in message
    assert "already submitted: 100: jobs 0-2" in message
    assert "Invalid account" in message
    assert not caught.value.transient
    assert "#SBATCH --array=0-2\n" in submitted[0]


def test_nothing_is_submitted_when_a_spec_is_invalid(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def slurm(argv: list[str], stdin: str | None) -> str:
        calls.append(argv)
        return "MaxArraySize = 1001\n"

    specs = [*sweep("ok", tmp_path, 3), {"name": "bad name", "command": "true"}]
    cluster = Cluster(SiteConfig.load("test-slurm"), transport=FakeTransport(slurm))
    with pytest.raises(SpecError, match="name"):
        cluster.submit_many(specs)
    assert calls == []


def test_a_backend_without_arrays_gets_one_submission_per_job(
    local_cluster: Cluster, tmp_path: Path
) -> None:
    """What a user's own backend gets (one lacking max_array_size and array_task_id)."""

    class PlainBackend:
        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.name = "plain"
            self.template = "local/job.sh.j2"
            self.missing_job_hint = ""
            self.submitted = 0

        def __getattr__(self, attribute: str) -> object:
            if attribute in ("max_array_size", "array_task_id"):
                raise AttributeError(attribute)
            return getattr(self.inner, attribute)

        def submit(self, script: str, spec: object, token: str | None = None) -> str:
            self.submitted += 1
            return self.inner.submit(script, spec, token)  # type: ignore[attr-defined,no-any-return]

    backend = PlainBackend(local_cluster.backend)
    plain = Cluster(local_cluster.site, transport=local_cluster.transport, backend=backend)  # type: ignore[arg-type]
    ids = plain.submit_many(sweep("plain", tmp_path, 3))
    assert backend.submitted == 3
    assert all("_" not in job_id for job_id in ids)
    plain.wait(ids, timeout=60)


def test_an_unwritable_workdir_is_refused_before_anything_is_submitted(
    local_cluster: Cluster, tmp_path: Path
) -> None:
    specs = [*sweep("fine", tmp_path, 2), *sweep("nowhere", tmp_path / "missing", 2)]
    with pytest.raises(SpecError, match=r"workdir: cannot write the sweep's parameters file"):
        local_cluster.submit_many(specs)
    assert "0 jobs" in local_cluster.check()
