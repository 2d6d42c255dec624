"""``hpcbridge render --explain``: the candidates of a GPU request, the chosen one and why the
others lost, beside the script the job would be submitted as (test-slurm's catalogue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge.cli.main import main


def render(tmp_path: Path, resources: dict[str, object], *options: str) -> tuple[int, str, str]:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({"name": "j", "command": "true", "resources": resources}))
    result = CliRunner().invoke(
        main, ["render", str(job_file), "--site", "test-slurm", "--explain", *options]
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # one table row per line, as a terminal shows it


def test_explain_lists_the_candidates_and_keeps_stdout_the_script(tmp_path: Path) -> None:
    code, out, err = render(tmp_path, {"gpu": {"count": 1, "min_memory": "40G"}})
    assert code == 0, err
    assert out.startswith("#!/bin/bash\n")
    assert "#SBATCH --partition=debug\n" in out
    assert "#SBATCH --gres=gpu:a100:1\n" in out
    rows = [line.split() for line in err.splitlines()]
    assert rows[0] == ["hardware", "matching:", "1", "GPU(s),", "at", "least", "40G", "each"]
    assert rows[2][:7] == ["*", "debug", "a100", "1", "80G", "fp64,tensor_cores", "3"]
    assert " ".join(rows[2][7:]) == "chosen: the cheapest that fits"
    assert " ".join(rows[3][6:]) == "fits, same cost; ranked after (default partition first)"
    assert [row[:2] for row in rows[4:]] == [["debug", "v100"], ["long", "v100"]]
    assert all(" ".join(row[6:]) == "32G per GPU, 40G asked" for row in rows[4:])


def test_explain_as_json(tmp_path: Path) -> None:
    code, out, _ = render(tmp_path, {"gpu": {"count": 2, "features": ["fp64"]}}, "--json")
    assert code == 0
    answer = json.loads(out)
    assert "#SBATCH --gres=gpu:v100:2\n" in answer["script"]
    placement = answer["placement"]
    assert placement["chosen"] == {"partition": "debug", "type": "v100"}
    assert [(c["partition"], c["type"], c["cost"]) for c in placement["candidates"]] == [
        ("debug", "v100", 1),
        ("long", "v100", 1),
        ("debug", "a100", 3),
        ("long", "a100", 3),
    ]
    assert {c["rejected"] for c in placement["candidates"]} == {None}


def test_explain_without_a_gpu_request(tmp_path: Path) -> None:
    code, out, err = render(tmp_path, {"gpus": 1, "gpu_type": "a100"})
    assert code == 0
    assert "#SBATCH --gres=gpu:a100:1\n" in out
    assert err == "hardware matching: none (the job asks for no GPUs by need: resources.gpu)\n"
    code, out, _ = render(tmp_path, {}, "--json")
    assert json.loads(out)["placement"] is None


def test_an_impossible_request_is_an_invalid_job(tmp_path: Path) -> None:
    code, out, err = render(tmp_path, {"gpu": {"features": ["fp64", "nvlink"]}})
    assert (code, out) == (3, "")
    assert err == (
        "error: resources.gpu.features: nvlink: no partition has GPUs with it (offered: fp64, "
        "tensor_cores)\n"
    )
