from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge import Dependency, JobInfo, JobSpec, JobState, SignalSpec, SpecError


def spec(**fields: object) -> JobSpec:
    return JobSpec.parse({"name": "job", "command": "true", **fields})


def test_minimal_spec_has_scheduler_neutral_defaults() -> None:
    job = spec()
    assert job.resources.nodes == job.resources.ntasks == job.resources.cpus_per_task == 1
    assert job.resources.walltime is None
    assert job.depends_on == []


def test_resources_accept_scheduler_spellings() -> None:
    job = spec(resources={"memory": "8G", "walltime": "2-00:00:00", "gpus": 2, "gpu_type": "a100"})
    assert job.resources.memory == 8192
    assert job.resources.walltime == 2 * 86400
    dumped = job.model_dump(mode="json")["resources"]
    assert dumped["walltime"] == "2-00:00:00"
    assert dumped["memory"] == "8192M"
    assert JobSpec.parse(job.model_dump(mode="json")) == job


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resources": {"memory": "8X"}}, "resources.memory: '8X' is not a memory size"),
        ({"resources": {"walltime": "1h"}}, "resources.walltime: '1h' is not a duration"),
        (
            {"resources": {"nodes": 0}},
            "resources.nodes: Input should be greater than or equal to 1",
        ),
        ({"resources": {"gpu_type": "a100"}}, "gpu_type 'a100' is set but gpus is 0"),
        ({"name": "two words"}, "name: 'two words' must be one word"),
        ({"partition": "debug;rm"}, "partition: 'debug;rm' must be one word"),
        ({"array": "1-x"}, "array: '1-x' is not an array range"),
        ({"env": {"1BAD": "x"}}, "env: '1BAD' is not a valid environment variable name"),
        ({"signal": "B:NOPE@10"}, "signal.name: 'NOPE' is not a signal name"),
        ({"depends_on": ["afterwards:12"]}, "depends_on.0.condition"),
        ({"depends_on": ["afterok"]}, "afterok needs a job id or name"),
        ({"unknown_field": 1}, "unknown_field: no such field"),
        ({"script": "run.sh"}, "give exactly one of command or script"),
        ({"begin": "2030-01-02T00:00:00", "deadline": "2030-01-01T00:00:00"}, "is not after begin"),
    ],
)
def test_errors_name_the_field_and_the_value(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec(**fields)
    assert expected in str(caught.value)


def test_dependencies_from_text() -> None:
    job = spec(depends_on=["12", "afterany:13", "afternotok:14_2", "singleton", 15])
    assert job.depends_on == [
        Dependency(condition="afterok", job="12"),
        Dependency(condition="afterany", job="13"),
        Dependency(condition="afternotok", job="14_2"),
        Dependency(condition="singleton"),
        Dependency(condition="afterok", job="15"),
    ]
    assert spec(depends_on="12").depends_on == [Dependency(job="12")]


def test_signal_spellings() -> None:
    assert spec(signal="B:USR1@90").signal == SignalSpec(name="USR1", seconds=90, batch_shell=True)
    assert spec(signal="SIGTERM").signal == SignalSpec(name="TERM", seconds=60, batch_shell=False)
    assert spec(signal={"name": "sigusr2", "seconds": 5}).signal == SignalSpec(
        name="USR2", seconds=5
    )


@pytest.mark.parametrize(
    ("array", "indices", "limit"),
    [("1-4", [1, 2, 3, 4], None), ("0-10:5%2", [0, 5, 10], 2), ("1,3,7-8", [1, 3, 7, 8], None)],
)
def test_array_indices(array: str, indices: list[int], limit: int | None) -> None:
    job = spec(array=array)
    assert job.array_indices() == indices
    assert job.array_limit() == limit
    assert spec().array_indices() == []


def test_job_file_yaml_resolves_script_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("echo hi\n")
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: j\nscript: run.sh\nresources: {memory: 1G}\n")
    job = JobSpec.from_yaml(job_file)
    assert job.script == tmp_path / "run.sh"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: [unclosed", "is not valid YAML"),
        ("- a list", "must hold a mapping"),
        ("name: j\ncommand: x\nresources: {memory: lots}", "resources.memory: 'lots'"),
    ],
)
def test_bad_job_files(tmp_path: Path, content: str, message: str) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(content)
    with pytest.raises(SpecError, match=message) as caught:
        JobSpec.from_yaml(job_file)
    assert str(job_file) in str(caught.value)


def test_missing_job_file() -> None:
    with pytest.raises(SpecError, match=r"cannot read job file /nonexistent\.yaml"):
        JobSpec.from_yaml("/nonexistent.yaml")


def test_terminal_states_and_held() -> None:
    assert JobState.TIMEOUT.is_terminal
    assert not JobState.REQUEUED.is_terminal
    held = JobInfo(job_id="1", state=JobState.PENDING, reason="JobHeldUser")
    assert held.held
    assert held.elapsed_seconds is None


# Characters that end or split a line for someone (bash, Python's splitlines, a terminal), and
# letters outside ASCII that \w would admit: none belongs in a one-word field.
LINE_BREAKERS = ["\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
NON_ASCII = ["é", "\u0661", "\uff4e"]  # a Latin letter, an Arabic-Indic digit, a fullwidth n
ONE_WORD_FIELDS: list[tuple[str, object]] = [
    ("name", "{}"),
    ("partition", "{}"),
    ("account", "{}"),
    ("qos", "{}"),
    ("workdir", "{}"),
    ("stdout", "{}"),
    ("stderr", "{}"),
    ("modules", ["{}"]),
    ("resources", {"gpus": 1, "gpu_type": "{}"}),
    ("array", "{}"),
    ("depends_on", ["{}"]),
    ("exclude_nodes", "{}"),
]


def _fill(template: object, value: str) -> object:
    if isinstance(template, str):
        return template.format(value)
    if isinstance(template, list):
        return [_fill(item, value) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, value) for key, item in template.items()}
    return template


@pytest.mark.parametrize(("field", "template"), ONE_WORD_FIELDS)
@pytest.mark.parametrize("bad", LINE_BREAKERS + NON_ASCII)
@pytest.mark.parametrize("where", ["trailing", "embedded"])
def test_one_word_fields_refuse_line_breaks_nul_and_non_ascii(
    field: str, template: object, bad: str, where: str
) -> None:
    good = {"array": "1", "depends_on": "42", "exclude_nodes": "node1"}.get(field, "rtinj")
    value = good + bad if where == "trailing" else good[:1] + bad + good[1:]
    spec: dict[str, object] = {"name": "ok", "command": "true", field: _fill(template, value)}
    with pytest.raises(SpecError) as refused:
        JobSpec.parse(spec)
    assert field in str(refused.value)


def test_checkpoint_directories_refuse_line_breaks_and_nul() -> None:
    for bad in LINE_BREAKERS:
        spec = {"name": "ok", "command": "true", "checkpoint": {"command": "true"}}
        spec["checkpoint"] = {"command": "true", "directory": f"ck{bad}x"}
        with pytest.raises(SpecError, match=r"checkpoint\.directory"):
            JobSpec.parse(spec)


@pytest.mark.parametrize("walltime", [0, "0", "0:00", "00:00:00", "0-0", -5])
def test_a_walltime_of_no_time_is_refused_by_name(walltime: object) -> None:
    with pytest.raises(SpecError, match=r"resources\.walltime: .*no time to run"):
        JobSpec.parse({"name": "w", "command": "true", "resources": {"walltime": walltime}})


def test_a_misspelt_field_names_the_field_it_most_likely_meant(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: x\ncommand: 'true'\nresources: {memroy: 4G}\n")
    with pytest.raises(SpecError, match=r"resources\.memroy: no such field; did you mean 'memory'"):
        JobSpec.from_yaml(job_file)


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: x\ncommand: [unclosed\n")
    with pytest.raises(SpecError) as refused:
        JobSpec.from_yaml(job_file)
    assert f'in "{job_file}", line 2' in str(refused.value)
    assert "<unicode string>" not in str(refused.value)
