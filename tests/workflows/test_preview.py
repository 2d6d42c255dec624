"""Progressive output without a scheduler: how a preview splits an array, which level the
coarse pass gets, the array spelling, what a job file with preview must say, and which
frames count as done."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge import JobSpec
from hpcbridge.errors import SpecError
from hpcbridge.site import SiteConfig
from hpcbridge.workflows.preview import array_text, frames, plan_preview
from hpcbridge.workflows.store import WorkflowRecord

SITE = SiteConfig.load("test-slurm")  # levels low, normal, high


def job(**extra: object) -> JobSpec:
    data = {"name": "shot", "command": "render", "array": "1-40%8", "workdir": "/w"}
    return JobSpec.parse({**data, "outputs": "f{index:02d}.png", **extra})


def test_every_tenth_frame_goes_first_at_the_highest_level_and_the_rest_waits_on_it() -> None:
    workflow = plan_preview(job(preview={"every": 10}), SITE)
    preview, rest = workflow.stages
    assert (preview.name, preview.array, preview.priority) == ("preview", "1,11,21,31%8", "high")
    assert rest.array == "2-10,12-20,22-30,32-40%8"
    assert rest.priority is None
    assert [(d.job, d.condition) for d in rest.depends_on] == [("preview", "afterany")]
    assert preview.outputs == rest.outputs == "f{index:02d}.png"


def test_chosen_frames_alongside_the_rest_at_a_named_level() -> None:
    workflow = plan_preview(
        job(preview={"first": [40, 1], "then": "alongside", "level": "normal"}), SITE
    )
    preview, rest = workflow.stages
    assert (preview.array, preview.priority) == ("1,40%8", "normal")
    assert (rest.array, rest.depends_on) == ("2-39%8", [])
    with pytest.raises(SpecError, match="'top' is not a level of site test-slurm"):
        plan_preview(job(preview={"every": 2, "level": "top"}), SITE)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preview": {"every": 10}, "array": None}, "only an array has a coarse first pass"),
        ({"preview": {"every": 10, "first": [1]}}, "exactly one of every and first"),
        ({"preview": {"first": [41]}}, r"preview.first: \[41\] are not indices of array"),
        ({"outputs": "frame.png"}, "must hold {index}"),
        ({"outputs": "f{frame}.png"}, "is not a pattern with {index} only"),
        ({"workdir": None}, "a relative pattern needs a workdir"),
    ],
)
def test_a_job_file_with_preview_or_outputs_says_what_is_wrong(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        job(**fields)


def test_array_spelling_joins_runs() -> None:
    assert array_text([3, 1, 2, 7, 9, 10]) == "1-3,7,9-10"
    assert array_text([5], 2) == "5%2"


def test_a_frame_is_done_when_its_file_is_there_and_not_empty(tmp_path: Path) -> None:
    workflow = plan_preview(job(preview={"every": 2}, array="1-6", workdir=str(tmp_path)), SITE)
    record = WorkflowRecord.new(workflow, "test-slurm")
    for index in (1, 2, 3):
        (tmp_path / f"f{index:02d}.png").write_text("pixels")
    (tmp_path / "f04.png").write_text("")
    found = frames(record)
    assert (found.total, found.done, found.missing) == (6, [1, 2, 3], [4, 5, 6])
    assert found.missing_text == "4-6"
