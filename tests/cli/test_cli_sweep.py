"""``hpcbridge submit JOBFILE --sweep params.csv|yaml``, on the local backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcbridge.cli.main import main


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for variable in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    monkeypatch.delenv("HPCBRIDGE_SITE", raising=False)
    return CliRunner()


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: swept\n"
        'command: printf %s "$ALPHA/$MODE" > "out-$HPCBRIDGE_ARRAY_INDEX.txt"\n'
        f"workdir: {tmp_path}\n"
        "env: {MODE: default}\n"
    )
    return path


def test_a_csv_sweep_submits_one_array_and_prints_an_id_per_row(
    run: CliRunner, job_file: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.csv"
    params.write_text("ALPHA,MODE\n0.1,fast\n0.2,slow\n'$(x)',default\n")
    result = run.invoke(main, ["submit", str(job_file), "--sweep", str(params), "--json"])
    assert result.exit_code == 0, result.output
    job_ids = json.loads(result.stdout)["job_ids"]
    assert [job_id.rpartition("_")[2] for job_id in job_ids] == ["0", "1", "2"]
    assert len({job_id.rpartition("_")[0] for job_id in job_ids}) == 1
    waited = run.invoke(main, ["wait", *job_ids, "--timeout", "60", "--json"])
    assert waited.exit_code == 0, waited.output
    written = [(tmp_path / f"out-{index}.txt").read_text() for index in range(3)]
    assert written == ["0.1/fast", "0.2/slow", "'$(x)'/default"]


def test_a_yaml_sweep_waits_and_reports_each_item(
    run: CliRunner, job_file: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("- {ALPHA: 1}\n- {ALPHA: 2, MODE: other}\n")
    result = run.invoke(
        main,
        ["submit", str(job_file), "--sweep", str(params), "--limit", "1", "--wait", "--json"],
    )
    assert result.exit_code == 0, result.output
    infos = json.loads(result.stdout)
    assert [info["state"] for info in infos] == ["COMPLETED", "COMPLETED"]
    assert (tmp_path / "out-1.txt").read_text() == "2/other"


def test_a_bad_row_is_named_and_nothing_is_submitted(
    run: CliRunner, job_file: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.csv"
    params.write_text("ALPHA,MODE\n0.1,fast\n0.2\n")
    result = run.invoke(main, ["submit", str(job_file), "--sweep", str(params)])
    assert result.exit_code == 3
    assert "row 2 (line 3): column MODE: no value" in result.stderr
    assert not (tmp_path / "xdg_data_home" / "hpcbridge" / "local" / "jobs").exists()


def test_limit_without_sweep_is_a_usage_error(run: CliRunner, job_file: Path) -> None:
    result = run.invoke(main, ["submit", str(job_file), "--limit", "2"])
    assert result.exit_code == 2
    assert "--limit and --max-array-size go with --sweep" in result.stderr
