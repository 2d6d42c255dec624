"""Status of many jobs reads the user's listing (squeue --me) instead of naming every id,
with the same answer: the commands are scripted here (captured real output), and compared
with the per-id query on the real test Slurm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpcbridge import FakeTransport, JobState, LocalTransport, SiteConfig
from hpcbridge.backends.slurm import backend as slurm_backend
from hpcbridge.backends.slurm import cli
from hpcbridge.backends.slurm.backend import SlurmBackend

DATA = Path(__file__).parents[1] / "data" / "slurm"
SQUEUE = (DATA / "squeue_mixed.txt").read_text()
SEP = cli.FIELD_SEPARATOR
LAUNCHED = ("2026-11-23T13:20:10", "2026-11-23T13:20:11", "2026-11-23T14:20:11")
OTHER_USER_ROW = SEP.join(
    ("2001", "2001", "N/A", "theirs", "RUNNING", "None", "vm", "debug", "chem", *LAUNCHED, "")
)
ENDED = ("2026-11-23T13:20:14",) * 3
SACCT_GONE = SEP.join(
    ("1073", "1073", "gone", "COMPLETED", "0:0", "None", "vm", "debug", "physics", *ENDED)
)


def scripted(argv: list[str], stdin: str | None) -> str:
    if argv[0] == "squeue" and "--me" in argv:
        return SQUEUE
    if argv[0] == "squeue":
        asked = next(a for a in argv if a.startswith("--jobs=")).split("=", 1)[1].split(",")
        return OTHER_USER_ROW + "\n" if "2001" in asked else ""
    if argv[0] == "sacct":
        return SACCT_GONE + "\n" + (DATA / "sacct_mixed.txt").read_text().splitlines()[1] + "\n"
    raise AssertionError(f"unexpected command {argv}")


def test_many_ids_read_the_listing_and_ask_only_for_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slurm_backend, "LISTING_FROM", 3)
    transport = FakeTransport(scripted)
    wanted = ["1067", "1069", "1070", "2001", "1073"]
    infos = SlurmBackend(transport).status(wanted)
    programs = [call.argv[0] for call in transport.calls]
    assert programs == ["squeue", "squeue", "sacct"]
    assert "--me" in transport.calls[0].argv
    assert f"--jobs={','.join(['2001', '1073'])}" in transport.calls[1].argv
    # sacct: the job gone from squeue, and 1070, which ended without an exit code in squeue
    assert "--jobs=1070,1073" in transport.calls[2].argv
    assert infos["1067"].state is JobState.RUNNING
    assert infos["1069"].state is JobState.RUNNING  # the array as a whole
    assert {"1069_1", "1069_2", "1069_3"} <= set(infos)
    assert not {"1068", "1071"} & set(infos)  # listed, not asked for
    assert infos["2001"].account == "chem"
    assert infos["1073"].state is JobState.COMPLETED
    assert infos["1070"].exit_code == 7


def test_few_ids_are_named() -> None:
    transport = FakeTransport(scripted)
    SlurmBackend(transport).status(["2001"])
    assert [call.argv[0] for call in transport.calls] == ["squeue"]
    assert "--jobs=2001" in transport.calls[0].argv


@pytest.mark.slurm
def test_listing_answers_as_the_per_id_query_on_real_slurm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Held jobs, a finished one and an unknown id: the same answer both ways."""
    site = SiteConfig.load("test-slurm")
    backend = SlurmBackend(LocalTransport(site.transport.command_timeout))
    ids = []
    try:
        for n in range(3):
            ids.append(
                subprocess.run(
                    [
                        "sbatch",
                        "--parsable",
                        "--hold",
                        f"--output={tmp_path}/%j.out",
                        f"--job-name=listing-{n}",
                        "--wrap",
                        "true",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
        wanted = [*ids, "999999999"]
        named = backend.status(wanted)
        monkeypatch.setattr(slurm_backend, "LISTING_FROM", 2)
        listed = backend.status(wanted)
        assert set(listed) == set(named) == set(ids)
        for job_id in ids:
            assert listed[job_id].held
            assert listed[job_id].model_dump(exclude={"reason"}) == named[job_id].model_dump(
                exclude={"reason"}
            )
    finally:
        subprocess.run(["scancel", *ids], check=False)
