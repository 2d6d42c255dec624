"""Months-long runs as chains of segments: the plan, and chains run to the end on the local
backend and on the real Slurm, where each segment hands over at its warning signal."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge import Cluster, JobState, SiteConfig
from hpcbridge.cli.main import main
from hpcbridge.errors import SpecError
from hpcbridge.jobs.checkpoint import is_finished, list_checkpoints
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.workflows.segments import SLURM_EARLY_SIGNAL_S, plan_segments, submit_segments
from hpcbridge.workflows.status import workflow_status
from hpcbridge.workflows.store import StateFileStore

# Counts to LAST, a step a second, keeping its progress in ./state; a restart goes on from the
# checkpoint's copy. Each run prints where it began, so the output shows the hand-overs.
COUNT = 'i=${START:-0}; echo "began at $i"; while [ $i -lt $LAST ]; do i=$((i+1)); echo $i > state.new; mv -f state.new state; sleep 1; done; echo "finished at $i"'  # noqa: E501
RESTART = f'START=$(cat "$HPCBRIDGE_CHECKPOINT/state"); {COUNT}'


def long_run(workdir: Path, *, last: int, total: str, **overrides: Any) -> dict[str, Any]:
    checkpoint = {
        "command": 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"',
        "restart": RESTART,
        "directory": str(workdir / "ck"),
        "total_runtime": total,
        **overrides.pop("checkpoint", {}),
    }
    return {
        "name": "longrun",
        "workdir": str(workdir),
        "stdout": str(workdir / "out-%j.txt"),
        "command": COUNT,
        "env": {"LAST": str(last)},
        "checkpoint": checkpoint,
        **overrides,
    }


def with_debug_limit(site: SiteConfig, seconds: int) -> SiteConfig:
    partitions = {
        name: partition.model_copy(update={"max_walltime": seconds, "default_walltime": None})
        for name, partition in site.partitions.items()
    }
    return site.model_copy(update={"partitions": partitions})


# -- the plan ---------------------------------------------------------------------------------


def test_a_long_run_becomes_a_chain_sized_by_the_partition_limit(tmp_path: Path) -> None:
    site = SiteConfig.load("test-slurm")  # debug: at most 1 hour
    spec = JobSpec.parse(long_run(tmp_path, last=1, total="5:00:00"))
    chain = plan_segments(spec, site)
    lead = 120 + SLURM_EARLY_SIGNAL_S  # the default warning, and Slurm's early minute
    count = -(-5 * 3600 // (3600 - lead))
    assert [stage.name for stage in chain.stages] == [f"seg{i}" for i in range(1, count + 1)]
    assert chain.name == "longrun"
    for index, stage in enumerate(chain.stages, start=1):
        assert stage.resources.walltime == 3600
        assert stage.checkpoint is not None
        assert stage.checkpoint.on_limit == "exit"
        assert stage.checkpoint.total_runtime is None
        assert stage.env["HPCBRIDGE_SEGMENT"] == str(index)
        assert stage.env["HPCBRIDGE_SEGMENTS"] == str(count)
        expected = [] if index == 1 else [(f"seg{index - 1}", "afterok")]
        assert [(d.job, d.condition) for d in stage.depends_on] == expected


def test_segment_names_sort_in_order_past_nine(tmp_path: Path) -> None:
    site = SiteConfig.load("local")
    spec = JobSpec.parse(
        long_run(
            tmp_path,
            last=1,
            total="2:00",
            resources={"walltime": "0:10"},
            checkpoint={"signal": "USR1@2"},
        )
    )
    names = [stage.name for stage in plan_segments(spec, site).stages]
    assert names[:2] == ["seg01", "seg02"]
    assert names == sorted(names)
    assert len(names) == 15  # 120 s of work, 8 s a segment: no early minute off Slurm


def test_a_walltime_above_the_limit_is_capped_and_a_shorter_one_kept(tmp_path: Path) -> None:
    site = SiteConfig.load("test-slurm")
    above = JobSpec.parse(
        long_run(tmp_path, last=1, total="3:00:00", resources={"walltime": "9:00:00"})
    )
    assert {s.resources.walltime for s in plan_segments(above, site).stages} == {3600}
    shorter = JobSpec.parse(
        long_run(tmp_path, last=1, total="3:00:00", resources={"walltime": "30:00"})
    )
    assert {s.resources.walltime for s in plan_segments(shorter, site).stages} == {1800}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"checkpoint": {"max_segments": 3}},
            r"needs \d+ segments of 01:00:00 .*checkpoint\.max_segments=3",
        ),
        ({"checkpoint": {"signal": "USR1@3600"}}, "leaves no time for work"),
        ({"depends_on": "123"}, "depends_on is not supported on a segment chain"),
    ],
)
def test_plans_that_cannot_work_are_refused_naming_the_field(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    spec = JobSpec.parse(long_run(tmp_path, last=1, total="10:00:00", **overrides))
    with pytest.raises(SpecError, match=message):
        plan_segments(spec, SiteConfig.load("test-slurm"))


def test_without_a_walltime_or_a_partition_limit_nothing_sizes_the_segments(tmp_path: Path) -> None:
    spec = JobSpec.parse(long_run(tmp_path, last=1, total="10:00:00"))
    with pytest.raises(SpecError, match=r"resources\.walltime is not set and partition"):
        plan_segments(spec, SiteConfig.load("local"))


def test_submitting_a_long_run_as_one_job_is_refused(
    tmp_path: Path, local_cluster: Cluster
) -> None:
    with pytest.raises(SpecError, match="chain of segments; submit it with `hpcbridge workflow"):
        local_cluster.submit(
            long_run(tmp_path, last=1, total="1:00", resources={"walltime": "0:30"})
        )


# -- chains run to the end --------------------------------------------------------------------


def outputs(workdir: Path) -> str:
    return "".join(path.read_text() for path in sorted(workdir.glob("out-*.txt")))


def test_a_chain_on_the_local_backend_hands_over_and_stops_once_the_work_is_done(
    workdir: Path, local_cluster: Cluster, tmp_path: Path
) -> None:
    # 14 steps of work, 8 s a segment: the second segment finishes it, the third ends at once.
    spec = JobSpec.parse(
        long_run(
            workdir,
            last=14,
            total="0:24",
            resources={"walltime": "0:10"},
            checkpoint={"signal": "USR1@2"},
        )
    )
    record = submit_segments(local_cluster, spec, StateFileStore(tmp_path / "workflows"))
    assert list(record.jobs) == ["seg1", "seg2", "seg3"]
    jobs = [record.latest_job(stage) for stage in ("seg1", "seg2", "seg3")]
    done = local_cluster.wait([job for job in jobs if job], timeout=90)
    assert {info.state for info in done.values()} == {JobState.COMPLETED}
    text = outputs(workdir)
    assert "began at 0" in text
    began = [int(n) for n in re.findall(r"began at (\d+)", text)]
    assert len(began) == 2, text
    assert 0 < began[1] < 14, text  # the second run went on from a checkpoint
    assert "finished at 14" in text
    assert is_finished(workdir / "ck")
    assert list_checkpoints(workdir / "ck")
    statuses = workflow_status(local_cluster, record)
    assert [s.state for s in statuses] == ["COMPLETED"] * 3


@pytest.mark.slurm
@pytest.mark.timeout(420)
def test_a_chain_on_slurm_runs_segment_after_segment_to_the_end(
    workdir: Path, tmp_path: Path
) -> None:
    # Two-minute segments warned 30 s (and up to a minute more) before their limit: 100 steps
    # of work cannot fit in one segment, so the chain must hand over at least once.
    site_file = tmp_path / "site.yaml"
    site = with_debug_limit(SiteConfig.load("test-slurm"), 120)
    site_file.write_text(yaml.safe_dump(site.model_dump(mode="json", exclude_none=True)))
    job_file = tmp_path / "longrun.yaml"
    job_file.write_text(
        yaml.safe_dump(long_run(workdir, last=100, total="1:40", checkpoint={"signal": "USR1@30"}))
    )
    store = tmp_path / "workflows"
    submitted = CliRunner().invoke(
        main,
        [
            "workflow",
            "submit",
            str(job_file),
            "--site",
            str(site_file),
            "--state-dir",
            str(store),
            "--json",
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    workflow_id = yaml.safe_load(submitted.stdout)["workflow_id"]
    record = StateFileStore(store).load(workflow_id)
    assert list(record.jobs) == [f"seg{i}" for i in range(1, 5)]  # 100 s / (120 - 30 - 60) s
    with Cluster(site) as cluster:
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline:
            states = [status.state for status in workflow_status(cluster, record)]
            if all(JobState(state).is_terminal for state in states):
                break
            time.sleep(2)
    assert states == ["COMPLETED"] * 4, outputs(workdir)
    text = outputs(workdir)
    began = [int(n) for n in re.findall(r"began at (\d+)", text)]
    assert began[0] == 0, text
    assert len(began) >= 2, text  # handed over at least once
    assert began == sorted(began), text
    assert "finished at 100" in text
    assert is_finished(workdir / "ck")
    shown = CliRunner().invoke(main, ["workflow", "status", workflow_id, "--state-dir", str(store)])
    assert shown.exit_code == 0, shown.output
    assert "seg4" in shown.output
