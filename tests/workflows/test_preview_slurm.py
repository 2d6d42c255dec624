"""Progressive output on the real test Slurm: a 40-frame array with ``preview: {every: 10}``
is a workflow of two arrays; frames 1, 11, 21, 31 finish before any other (the rest waits on
them with afterany); ``workflow frames`` counts the frames whose file is there, names the
missing ones, and ``--resubmit`` runs only those again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from hpcbridge.cli.main import main

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def hpcbridge(*argv: str) -> Result:
    result = CliRunner().invoke(main, list(argv))
    assert result.exit_code == 0, f"hpcbridge {' '.join(argv)}: {result.output}"
    return result


def frames(workflow_id: str, *options: str) -> dict[str, object]:
    answer: dict[str, object] = json.loads(
        hpcbridge("workflow", "frames", workflow_id, *options, "--json").stdout
    )
    return answer


def wait_for_all(workflow_id: str, options: list[str], timeout: float = 240) -> None:
    limit = time.monotonic() + timeout
    while frames(workflow_id, *options)["missing"]:
        assert time.monotonic() < limit, f"frames still missing after {timeout} s"
        time.sleep(0.5)


def test_a_preview_finishes_every_tenth_frame_first_and_missing_frames_run_again(
    workdir: Path,
) -> None:
    (workdir / "frames").mkdir(mode=0o777)
    render = (
        "sleep 0.2; i=$SLURM_ARRAY_TASK_ID; echo frame $i > frames/f$(printf %02d $i).txt; "
        "echo $i >> order.log"
    )
    job = {
        "name": "shot",
        "command": render,
        "array": "1-40",
        "workdir": str(workdir),
        "stdout": "/dev/null",
        "outputs": "frames/f{index:02d}.txt",
        "preview": {"every": 10},
    }
    job_file = workdir / "shot.yaml"
    job_file.write_text(yaml.safe_dump(job))
    options = ["--state-dir", str(workdir / "state")]
    submitted = hpcbridge(
        "workflow", "submit", str(job_file), "--site", "test-slurm", *options, "--json"
    )
    workflow_id = json.loads(submitted.stdout)["workflow_id"]
    record = json.loads(hpcbridge("workflow", "status", workflow_id, *options, "--json").stdout)
    assert [stage["stage"] for stage in record["stages"]] == ["preview", "rest"]

    wait_for_all(workflow_id, options)
    order = (workdir / "order.log").read_text().split()
    assert sorted(order[:4], key=int) == ["1", "11", "21", "31"]
    assert len(order) == 40

    for index in (5, 33, 34):
        (workdir / "frames" / f"f{index:02d}.txt").write_text("")  # an empty frame is not done
    found = frames(workflow_id, *options)
    assert (found["total"], found["missing"]) == (40, [5, 33, 34])
    status = hpcbridge("workflow", "status", workflow_id, *options).stdout
    assert "outputs: 37 of 40 done; missing 5,33-34" in status

    redo = frames(workflow_id, *options, "--resubmit")
    assert redo["resubmitted_as"]
    wait_for_all(workflow_id, options)
    assert sorted((workdir / "order.log").read_text().split()[40:], key=int) == ["5", "33", "34"]
