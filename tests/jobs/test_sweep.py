"""Sweeps: which jobs share an array, how arrays are split, and sweep files' errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge import JobSpec, SpecError
from hpcbridge.jobs import sweep
from hpcbridge.jobs.sweep_file import load_sweep, sweep_specs


def spec(name: str = "sim", command: str = "./sim", **fields: object) -> JobSpec:
    return JobSpec.parse({"name": name, "command": command, **fields})


def test_jobs_differing_in_command_and_env_share_one_array() -> None:
    specs = [spec(command=f"./sim {i}", env={"ALPHA": str(i)}) for i in range(4)]
    [chunk] = sweep.plan(specs, max_array_size=None, limit=5)
    assert chunk.positions == (0, 1, 2, 3)
    assert chunk.spec.array == "0-3%5"
    assert chunk.spec.env == {}
    assert chunk.spec.command == sweep.RUN_TASK_COMMAND
    assert [task.command for task in chunk.tasks] == [f"./sim {i}" for i in range(4)]
    assert [task.env for task in chunk.tasks] == [{"ALPHA": str(i)} for i in range(4)]


def test_a_shared_command_stays_in_the_script() -> None:
    specs = [spec(env={"ALPHA": str(i)}) for i in range(3)]
    [chunk] = sweep.plan(specs, max_array_size=None, limit=None)
    assert chunk.spec.command == "./sim"
    assert chunk.spec.array == "0-2"
    assert all(task.command is None for task in chunk.tasks)


def test_other_differences_make_separate_submissions_in_list_order() -> None:
    specs = [
        spec(env={"A": "1"}),
        spec(partition="long"),
        spec(env={"A": "2"}),
        spec(name="other"),
        spec(array="1-3"),  # an array already: as it is
        spec(env={"A": "3"}),
        spec(partition="long", env={"A": "4"}),
    ]
    chunks = sweep.plan(specs, max_array_size=None, limit=None)
    assert [chunk.positions for chunk in chunks] == [(0, 2, 5), (1, 6), (3,), (4,)]
    assert [chunk.is_array for chunk in chunks] == [True, True, False, False]
    assert chunks[3].spec.array == "1-3"


def test_arrays_above_the_limit_split_evenly_and_a_lone_job_is_plain() -> None:
    specs = [spec(env={"I": str(i)}) for i in range(7)]
    chunks = sweep.plan(specs, max_array_size=3, limit=None)
    assert [chunk.positions for chunk in chunks] == [(0, 1, 2), (3, 4), (5, 6)]
    assert [chunk.spec.array for chunk in chunks] == ["0-2", "0-1", "0-1"]
    [one, two] = sweep.plan(specs[:2], max_array_size=1, limit=None)
    assert (one.is_array, two.is_array) == (False, False)
    assert two.spec.env == {"I": "1"}


def test_csv_rows_become_environments(tmp_path: Path) -> None:
    path = tmp_path / "params.csv"
    path.write_bytes(b'ALPHA,NOTE\n0.1,"two\r\nlines, and ""quotes"""\n0.2,\n')
    rows = load_sweep(path)
    assert rows == [
        {"ALPHA": "0.1", "NOTE": 'two\r\nlines, and "quotes"'},
        {"ALPHA": "0.2", "NOTE": ""},
    ]
    jobs = sweep_specs(spec(env={"ALPHA": "9", "OMP_NUM_THREADS": "2"}), rows)
    assert jobs[1].env == {"ALPHA": "0.2", "OMP_NUM_THREADS": "2", "NOTE": ""}


def test_yaml_rows_become_environments(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("- {alpha: 0.5, fast: true, name: x}\n- {alpha: 2, fast: false, name: ''}\n")
    assert load_sweep(path) == [
        {"alpha": "0.5", "fast": "true", "name": "x"},
        {"alpha": "2", "fast": "false", "name": ""},
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.csv", "A,B\n1,2\n3\n", "row 2 (line 3): column B: no value"),
        ("p.csv", "A,B\n1,2,3\n", "row 1 (line 2): too many values"),
        ("p.csv", "A,my var\n1,2\n", "the header: column 'my var' is not an environment"),
        ("p.csv", "A,A\n1,2\n", "the header: column A appears twice"),
        ("p.csv", "A\n1\n\x00\n", "row 2 (line 3), column A: holds a NUL byte"),
        ("p.csv", "", "holds no rows"),
        ("p.yaml", "- {A: 1}\n- {A: [1, 2]}\n", "row 2, column A: list [1, 2]"),
        ("p.yaml", "- {A: 1}\n- {A: }\n", "row 2, column A: no value"),
        ("p.yaml", "- {A: 1}\n- 7\n", "row 2: a row is a mapping"),
        ("p.yaml", "- {A: 1}\n- {1x: 2}\n", "row 2: column '1x' is not an environment"),
        ("p.yaml", "A: 1\n", "must hold a list of rows"),
        ("p.txt", "A\n1\n", "name it .csv, .yaml or .yml"),
    ],
)
def test_bad_sweep_files_name_the_row_and_column(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SpecError) as caught:
        load_sweep(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
