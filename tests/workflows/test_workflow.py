"""Workflow validation, the state store, and the CLI on the local backend (no services needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcbridge import Cluster
from hpcbridge.cli.main import main
from hpcbridge.cli.options import EXIT_INVALID, EXIT_NO_STATE
from hpcbridge.errors import SpecError, WorkflowError
from hpcbridge.workflows.model import Workflow, stage_dependencies
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import StateFileStore, WorkflowRecord

pytestmark = pytest.mark.timeout(60)


def stage(name: str, *depends_on: str, command: str = "true") -> dict[str, Any]:
    return {"name": name, "command": command, "depends_on": list(depends_on)}


def workflow(*stages: dict[str, Any]) -> Workflow:
    return Workflow.parse({"name": "w", "stages": list(stages)})


def test_a_cycle_is_refused_naming_its_stages_in_order() -> None:
    with pytest.raises(SpecError, match=r"cycle: a -> b -> c -> a"):
        workflow(stage("a", "c"), stage("b", "a"), stage("c", "afterany:b"), stage("d", "a"))


def test_a_stage_depending_on_itself_is_a_cycle() -> None:
    with pytest.raises(SpecError, match=r"cycle: a -> a"):
        workflow(stage("a", "a"))


def test_a_missing_stage_is_named() -> None:
    with pytest.raises(SpecError, match=r"stage 'b' depends on 'prepp', which is not a stage"):
        workflow(stage("prep"), stage("b", "prepp"))


def test_duplicate_stage_names_are_refused() -> None:
    with pytest.raises(SpecError, match=r"used more than once: \['a'\]"):
        workflow(stage("a"), stage("b"), stage("a"))


@pytest.mark.parametrize("name", ["a/b", ".hidden"])
def test_a_workflow_name_must_make_a_file_name(name: str) -> None:
    with pytest.raises(SpecError, match=r"name: .* must not contain '/' or start with '\.'"):
        Workflow.parse({"name": name, "stages": [stage("a")]})


def test_an_empty_workflow_is_refused() -> None:
    with pytest.raises(SpecError, match="at least one stage"):
        workflow()


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("prep", ("prep", "afterok")),
        ("afterok:prep", ("prep", "afterok")),
        ("afterany:prep", ("prep", "afterany")),
        ("afternotok:prep", ("prep", "afternotok")),
        ({"job": "prep", "condition": "afterany"}, ("prep", "afterany")),
    ],
)
def test_conditions_are_parsed(written: Any, expected: tuple[str, str]) -> None:
    parsed = Workflow.parse(
        {
            "name": "w",
            "stages": [stage("prep"), {"name": "b", "command": "x", "depends_on": written}],
        }
    )
    assert list(stage_dependencies(parsed.stage("b"))) == [expected]


@pytest.mark.parametrize("written", ["singleton", "after:prep", "afterburner:prep"])
def test_conditions_other_than_the_three_are_refused(written: str) -> None:
    with pytest.raises(SpecError, match=r"depends_on"):
        workflow(stage("prep"), stage("b", written))


def test_a_bad_stage_field_is_named_with_its_value() -> None:
    data = {"name": "w", "stages": [{"name": "a", "command": "x", "resources": {"walltime": "xx"}}]}
    with pytest.raises(SpecError, match=r"stages\.0\.resources\.walltime: 'xx' is not a duration"):
        Workflow.parse(data)


def test_order_puts_every_stage_after_its_dependencies() -> None:
    parsed = workflow(stage("d", "b", "afterany:c"), stage("b", "a"), stage("c", "a"), stage("a"))
    order = parsed.order()
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")


def test_a_workflow_file_names_itself_and_resolves_scripts(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("true\n")
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        "stages:\n  - {name: a, script: run.sh}\n  - {name: b, command: x, depends_on: a}\n"
    )
    parsed = Workflow.from_yaml(file)
    assert parsed.name == "pipeline"
    assert parsed.stage("a").script == tmp_path / "run.sh"
    assert parsed.job_name("b") == "pipeline.b"


def test_a_file_without_stages_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "w.yaml"
    file.write_text("name: w\n")
    with pytest.raises(SpecError, match="list of stages"):
        Workflow.from_yaml(file)


def test_the_store_round_trips_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateFileStore(tmp_path / "flows")
    record = WorkflowRecord.new(workflow(stage("a"), stage("b", "afternotok:a")), "test-slurm")
    record.add_job("a", "12", record.created)
    record.add_job("a", "15", record.created)
    store.save(record)
    loaded = store.load(record.workflow_id)
    assert loaded == record
    assert loaded.latest_job("a") == "15"
    assert loaded.latest_job("b") is None
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == [
        f"{record.workflow_id}.json",
        f"{record.workflow_id}.json.lock",
    ]


def test_unknown_unsafe_and_corrupt_ids_raise_workflow_error(tmp_path: Path) -> None:
    store = StateFileStore(tmp_path)
    with pytest.raises(WorkflowError, match="no workflow 'nope'"):
        store.load("nope")
    with pytest.raises(WorkflowError, match="is not a workflow id"):
        store.load("../etc/passwd")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(WorkflowError, match=r"broken\.json is unusable"):
        store.load("broken")


def test_the_cli_refuses_a_cycle_before_submitting(tmp_path: Path) -> None:
    file = tmp_path / "w.yaml"
    file.write_text(
        "stages:\n"
        "  - {name: a, command: x, depends_on: b}\n"
        "  - {name: b, command: x, depends_on: a}\n"
    )
    state = tmp_path / "state"
    result = CliRunner().invoke(
        main, ["workflow", "submit", str(file), "--site", "local", "--state-dir", str(state)]
    )
    assert result.exit_code == EXIT_INVALID
    assert "cycle: a -> b -> a" in result.output or "cycle: b -> a -> b" in result.output
    assert not state.exists()


def test_the_cli_reports_an_unknown_workflow_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["workflow", "status", "nope", "--state-dir", str(tmp_path)])
    assert result.exit_code == EXIT_NO_STATE
    assert "no workflow 'nope'" in result.output


def test_help_does_not_import_the_workflow_machinery() -> None:
    code = (
        "import sys; from hpcbridge.cli.main import main\n"
        "try:\n    main(['workflow', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('networkx', 'pydantic', 'rich', 'filelock') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_local_backend_failure_cancel_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole cycle through the CLI, each command a fresh Cluster, on the local backend."""
    local_cycle(tmp_path, monkeypatch, ["--state-dir", str(tmp_path / "state")])


def test_the_cycle_with_the_record_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_url: str
) -> None:
    local_cycle(tmp_path, monkeypatch, ["--ledger", ledger_url])
    assert not (tmp_path / "xdg-state").exists()  # nothing went to the state files


def local_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: list[str]) -> None:
    """Submit, see the dependent cancelled, fix the input, resume, show."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "w.yaml"
    file.write_text(
        "name: three\nstages:\n"
        "  - {name: one, command: 'echo 1 > one.txt'}\n"
        "  - {name: two, command: 'test -f input.ok', depends_on: one}\n"
        "  - {name: three, command: 'echo 3', depends_on: two}\n"
    )
    runner = CliRunner()
    submitted = runner.invoke(
        main, ["workflow", "submit", str(file), "--site", "local", "--json", *state]
    )
    assert submitted.exit_code == 0, submitted.output
    flow = json.loads(submitted.output)
    workflow_id = flow["workflow_id"]
    stages = _wait_for(runner, workflow_id, state, lambda s: s["three"]["state"] == "CANCELLED")
    assert stages["one"]["state"] == "COMPLETED"
    assert stages["two"]["state"] == "FAILED"
    assert stages["three"]["note"].startswith("cancelled: dependency 'two' ended FAILED")

    (tmp_path / "input.ok").touch()
    resumed = runner.invoke(main, ["workflow", "resume", workflow_id, "--json", *state])
    assert resumed.exit_code == 0, resumed.output
    assert list(json.loads(resumed.output)["resubmitted"]) == ["two", "three"]
    stages = _wait_for(runner, workflow_id, state, lambda s: s["three"]["state"] == "COMPLETED")
    assert stages["one"]["job_id"] == flow["jobs"]["one"]
    assert stages["two"]["state"] == "COMPLETED"

    shown = runner.invoke(main, ["workflow", "show", workflow_id, "--format", "json", *state])
    assert shown.exit_code == 0, shown.output
    drawn = {s["name"]: s for s in json.loads(shown.output)["stages"]}
    assert (drawn["two"]["job_id"], drawn["two"]["state"]) == (stages["two"]["job_id"], "COMPLETED")
    assert drawn["three"]["depends_on"] == [{"stage": "two", "condition": "afterok"}]
    drawing = tmp_path / "flow.svg"
    args = ["workflow", "show", workflow_id, "--format", "svg", "--out", str(drawing), *state]
    shown = runner.invoke(main, args)
    assert shown.exit_code == 0, shown.output
    assert b"<svg" in drawing.read_bytes()


def test_a_stage_the_site_refuses_stops_the_workflow_before_submitting(tmp_path: Path) -> None:
    file = tmp_path / "w.yaml"
    file.write_text(
        "stages:\n"
        "  - {name: a, command: x}\n"
        "  - {name: b, command: x, depends_on: a, partition: nope}\n"
    )
    state = tmp_path / "state"
    args = ["workflow", "submit", str(file), "--site", "test-slurm", "--state-dir", str(state)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_INVALID
    assert "stage 'b': partition: 'nope' is not a partition of site test-slurm" in result.output
    assert not list(state.glob("*.json"))


def _wait_for(
    runner: CliRunner, workflow_id: str, state: list[str], done: Any, timeout: float = 30
) -> dict[str, dict[str, Any]]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = runner.invoke(main, ["workflow", "status", workflow_id, "--json", *state])
        assert result.exit_code == 0, result.output
        stages = {s["stage"]: s for s in json.loads(result.output)["stages"]}
        if done(stages) or time.monotonic() > deadline:
            return stages
        time.sleep(0.3)


def test_two_resumes_at_once_resubmit_a_stage_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    store = StateFileStore(tmp_path / "state")
    flow = workflow(stage("one", command="test -f input.ok"), stage("two", "one"))
    with Cluster.local() as cluster:
        record = submit_workflow(cluster, flow, store)
        cluster.wait([record.latest_job("one") or "", record.latest_job("two") or ""], timeout=30)
    (tmp_path / "input.ok").touch()
    argv = [str(Path(sys.executable).with_name("hpcbridge")), "workflow", "resume"]
    argv += [record.workflow_id, "--json", "--state-dir", str(store.directory)]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    answers = [json.loads(run.communicate(timeout=30)[0]) for run in runs]
    assert sorted(len(answer["resubmitted"]) for answer in answers) == [0, 2]
    jobs = store.load(record.workflow_id).jobs
    assert [len(jobs[name]) for name in ("one", "two")] == [2, 2]


def test_the_example_workflow_runs_as_its_comment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    example = Path(__file__).resolve().parents[2] / "examples" / "workflow.yaml"
    state = ["--state-dir", str(tmp_path / "state")]
    runner = CliRunner()
    submitted = runner.invoke(
        main, ["workflow", "submit", str(example), "--site", "local", "--json", *state]
    )
    assert submitted.exit_code == 0, submitted.output
    workflow_id = json.loads(submitted.output)["workflow_id"]
    stages = _wait_for(
        runner, workflow_id, state, lambda s: s["explain"]["state"] not in ("PENDING", "RUNNING")
    )
    assert {name: s["state"] for name, s in stages.items()} == {
        "prepare": "COMPLETED",
        "compute": "FAILED",
        "report": "CANCELLED",
        "explain": "COMPLETED",
    }
    (tmp_path / "input.ok").touch()
    resumed = runner.invoke(main, ["workflow", "resume", workflow_id, "--json", *state])
    assert list(json.loads(resumed.output)["resubmitted"]) == ["compute", "report"]
    _wait_for(runner, workflow_id, state, lambda s: s["report"]["state"] == "COMPLETED")
    assert (tmp_path / "result.txt").read_text() == (tmp_path / "prepared.txt").read_text()


def test_show_offers_every_export_format() -> None:
    from hpcbridge.cli import workflow as cli_workflow
    from hpcbridge.workflows import export as workflow_export

    assert cli_workflow.FORMATS == workflow_export.FORMATS
