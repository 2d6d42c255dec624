"""Rendering: golden files pin each template; hypothesis proves hostile values stay data."""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbridge import JobSpec, RenderError, SiteConfig, SpecError
from hpcbridge.backends.pbs import PbsBackend
from hpcbridge.backends.slurm import SlurmBackend, cli
from hpcbridge.jobs import sweep
from hpcbridge.jobs.rendering import Renderer
from hpcbridge.jobs.sweep_file import load_sweep, sweep_specs
from hpcbridge.transports import FakeTransport

GOLDEN = Path(__file__).parents[1] / "golden"

FULL_SPEC = {
    "name": "sim-step_2",
    "command": 'python train.py --epochs 3 --out "$HOME/results"',
    "resources": {
        "nodes": 2,
        "ntasks": 8,
        "cpus_per_task": 4,
        "memory": "16G",
        "gpus": 2,
        "gpu_type": "a100",
        "walltime": "1-12:00:00",
    },
    "partition": "gpu",
    "account": "physics",
    "qos": "long",
    "array": "1-100%10",
    "depends_on": ["101", "afterany:102", "afternotok:103_4", "singleton"],
    "requeue": True,
    "signal": "B:USR1@300",
    "begin": "2030-01-01T08:00:00",
    "deadline": "2030-01-03T08:00:00",
    "nice": 50,
    "env": {"OMP_NUM_THREADS": "4", "GREETING": 'it\'s a "test" $(not run)'},
    "workdir": "/scratch/physics/run1",
    "stdout": "logs/%x-%A_%a.out",
    "stderr": "logs/%x-%A_%a.err",
    "modules": ["gcc/12.2", "openmpi/4.1"],
    "setup": ["source venv/bin/activate", "set -o pipefail"],
}
MINIMAL_SPEC = {"name": "hello", "command": "echo hello"}


def render_slurm(spec: dict[str, object], token: str | None = None) -> str:
    job = JobSpec.parse(spec)
    context = {"dependency": cli.dependency_expression(job.depends_on)}
    return Renderer().render("slurm/job.sh.j2", job, token=token, **context)


def render_pbs(spec: dict[str, object], token: str | None = None) -> str:
    backend = PbsBackend(FakeTransport(lambda argv, stdin: ""), gpu_type_resource="gpu_model")
    job = JobSpec.parse(spec)
    return Renderer().render(backend.template, job, token=token, **backend.template_context(job))


PBS_FULL_SPEC = {
    **{key: value for key, value in FULL_SPEC.items() if key not in {"qos", "deadline"}},
    "array": "1-100:2%10",
    "depends_on": ["101.srv", "afterany:102[].srv", "afternotok:103[4].srv"],
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize(
    ("name", "spec"), [("slurm_full.sh", FULL_SPEC), ("slurm_minimal.sh", MINIMAL_SPEC)]
)
def test_slurm_golden(name: str, spec: dict[str, object]) -> None:
    check_golden(name, render_slurm(spec))


@pytest.mark.parametrize(
    ("name", "spec"), [("pbs_full.sh", PBS_FULL_SPEC), ("pbs_minimal.sh", MINIMAL_SPEC)]
)
def test_pbs_golden(name: str, spec: dict[str, object]) -> None:
    check_golden(name, render_pbs(spec))


def test_pbs_script_is_valid_bash_and_carries_its_token() -> None:
    script = render_pbs(PBS_FULL_SPEC, token="hpcbridge:abc")
    assert "#PBS -v HPCBRIDGE_SUBMISSION=hpcbridge:abc\n" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_rendered_script_is_valid_bash() -> None:
    script = render_slurm(FULL_SPEC, token="hpcbridge:abc")
    assert "#SBATCH --comment=hpcbridge:abc\n" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_site_templates_override_packaged_ones(tmp_path: Path) -> None:
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "job.sh.j2").write_text(
        '#!/bin/bash\n#SBATCH --constraint=ib\n{% include "common/body.sh.j2" %}'
    )
    script = Renderer(tmp_path).render("slurm/job.sh.j2", JobSpec.parse(MINIMAL_SPEC))
    assert script.startswith("#!/bin/bash\n#SBATCH --constraint=ib\n")
    assert script.endswith("echo hello\n")


def test_undefined_names_in_templates_fail_loudly(tmp_path: Path) -> None:
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "job.sh.j2").write_text("#SBATCH --x={{ no_such_value }}\n")
    with pytest.raises(RenderError, match="no_such_value"):
        Renderer(tmp_path).render("slurm/job.sh.j2", JobSpec.parse(MINIMAL_SPEC))


def test_printing_none_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "job.sh.j2").write_text("#SBATCH --partition={{ job.partition }}\n")
    with pytest.raises(RenderError, match="printed None"):
        Renderer(tmp_path).render("slurm/job.sh.j2", JobSpec.parse(MINIMAL_SPEC))


def test_script_files_are_embedded(tmp_path: Path) -> None:
    script_file = tmp_path / "run.sh"
    script_file.write_text("#!/bin/bash\necho from-script\n")
    rendered = render_slurm({"name": "s", "script": str(script_file)})
    assert rendered.endswith("# job\n#!/bin/bash\necho from-script\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [("#!/usr/bin/env python\nprint(1)\n", "only shell scripts"), (None, "cannot read")],
)
def test_unusable_script_files(tmp_path: Path, content: str | None, message: str) -> None:
    script_file = tmp_path / "run.py"
    if content is not None:
        script_file.write_text(content)
    with pytest.raises(SpecError, match=message):
        render_slurm({"name": "s", "script": str(script_file)})


# Strings built to break out of quoting if any value reached the script unquoted.
ATTACKS = [
    "$(touch {canary})",
    "`touch {canary}`",
    "'; touch {canary}; '",
    '"; touch {canary}; "',
    "\ntouch {canary}\n",
    "\\'$(touch {canary})",
    "${{IFS}}touch${{IFS}}{canary}",
    "&& touch {canary}",
    # Line breaks for bash, for Python's splitlines or a terminal, and NUL, trailing or inside.
    "{canary}\n",
    "x\r\ntouch {canary}",
    "\x00touch {canary}",
    "\u2028touch {canary}\u2029",
    "\x85touch {canary}\x0b",
]


def hostile_text(canary: Path) -> st.SearchStrategy[str]:
    attack = st.sampled_from(ATTACKS).map(lambda text: text.format(canary=canary))
    noise = st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=12
    )
    return st.lists(st.one_of(attack, noise), min_size=1, max_size=4).map("".join)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_env_values_arrive_intact_and_run_nothing(
    tmp_path: Path, data: st.DataObject
) -> None:
    canary = tmp_path / "canary"
    value = data.draw(hostile_text(canary))
    render = data.draw(st.sampled_from([render_slurm, render_pbs]))
    spec = {"name": "h", "command": 'printf %s "$HOSTILE"', "env": {"HOSTILE": value}}
    if "\x00" in value:  # no variable can hold NUL: refused, never cut short
        with pytest.raises(SpecError, match="env: HOSTILE"):
            render(spec)
        return
    script = render(spec)
    # Bytes, not text: text mode would turn a "\r" the job printed into "\n".
    ran = subprocess.run(["bash"], input=script.encode(), capture_output=True, check=False)
    assert ran.stdout == value.encode()
    assert not canary.exists()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_sweep_values_arrive_intact_and_run_nothing(
    tmp_path: Path, data: st.DataObject
) -> None:
    """A sweep row's value reaches its array task through a CSV file, the planner, the
    parameters file and the task's script as data: printed exactly, never run; a task's own
    command (where the tasks' commands differ) is likewise quoted there and runs as written."""
    canary = tmp_path / "canary"
    values = data.draw(st.lists(hostile_text(canary), min_size=2, max_size=3))
    scheduler = data.draw(st.sampled_from(["slurm", "pbs"]))
    own_commands = data.draw(st.booleans())
    params = tmp_path / "params.csv"
    with params.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows([["HOSTILE"], *[[value] for value in values]])
    base = JobSpec.parse({"name": "h", "command": 'printf %s "$HOSTILE"'})
    nul_row = next((row for row, value in enumerate(values, 1) if "\x00" in value), None)
    if nul_row is not None:  # no variable can hold NUL: refused with its row, never cut short
        with pytest.raises(SpecError, match=f"row {nul_row} .*column HOSTILE: holds a NUL"):
            load_sweep(params)
        return
    specs = sweep_specs(base, load_sweep(params))
    if own_commands:
        specs = [
            job.model_copy(update={"command": f"printf %s {shlex.quote(value)}"})
            for job, value in zip(specs, values, strict=True)
        ]
    [chunk] = sweep.plan(specs, max_array_size=None, limit=None)
    renderer = Renderer()
    (tmp_path / "sweep.sh").write_text(sweep.render_parameters(renderer, chunk.tasks))
    if scheduler == "slurm":
        context: dict[str, object] = {"dependency": ""}
        index_variable = "SLURM_ARRAY_TASK_ID"
    else:
        backend = PbsBackend(FakeTransport(lambda argv, stdin: ""))
        context = backend.template_context(chunk.spec)
        index_variable = "PBS_ARRAY_INDEX"
    template = f"{scheduler}/job.sh.j2"
    script = renderer.render(template, chunk.spec, token=None, sweep_file="./sweep.sh", **context)
    for index, value in enumerate(values):
        environment = {**os.environ, index_variable: str(index), "PBS_O_WORKDIR": str(tmp_path)}
        ran = subprocess.run(
            ["bash"],
            input=script.encode(),
            capture_output=True,
            cwd=tmp_path,
            env=environment,
            check=False,
        )
        assert ran.stdout == value.encode(), ran.stderr
    assert not canary.exists()


TOKEN_FIELDS = ["name", "partition", "account", "qos", "workdir", "stdout", "stderr"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_directive_values_are_refused_or_inert(tmp_path: Path, data: st.DataObject) -> None:
    canary = tmp_path / "canary"
    field = data.draw(st.sampled_from([*TOKEN_FIELDS, "modules", "gpu_type"]))
    value = data.draw(hostile_text(canary))
    spec: dict[str, object] = {"name": "h", "command": "true"}
    if field == "modules":
        spec["modules"] = [value]
    elif field == "gpu_type":
        spec["resources"] = {"gpus": 1, "gpu_type": value}
    else:
        spec[field] = value
    try:
        script = render_slurm(spec)
    except SpecError as error:
        refusal = str(error)
    else:
        refusal = ""
    if refusal:
        assert f"  {field}" in refusal or "resources.gpu_type" in refusal
        return
    # Accepted values are single safe tokens: they appear verbatim and run nothing.
    assert value in script
    subprocess.run(
        ["bash"],
        input=script.replace("module load", "true"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert not canary.exists()


def test_site_prepare_fills_defaults() -> None:
    site = SiteConfig.load("test-slurm")
    job = site.prepare(JobSpec.parse(MINIMAL_SPEC))
    assert job.partition == "debug"
    assert job.resources.walltime == 600


def test_site_templates_render_in_a_sandbox(tmp_path: Path) -> None:
    """A site's template may shape the script, not reach Python: plain Jinja would run
    ``touch`` here while rendering (no job submitted), with the rights of whoever renders."""
    canary = tmp_path / "canary"
    overrides = tmp_path / "templates" / "slurm"
    overrides.mkdir(parents=True)
    attack = "{{ cycler.__init__.__globals__.os.system('touch CANARY') }}"
    (overrides / "job.sh.j2").write_text("#!/bin/bash\n" + attack.replace("CANARY", str(canary)))
    backend = SlurmBackend(FakeTransport(lambda argv, stdin: ""))
    job = JobSpec.parse(MINIMAL_SPEC)
    with pytest.raises(RenderError, match="unsafe"):
        Renderer(tmp_path / "templates").render(
            backend.template, job, token=None, **backend.template_context(job)
        )
    assert not canary.exists()


@pytest.mark.parametrize(
    ("backend", "spec"),
    [
        (SlurmBackend(FakeTransport(lambda argv, stdin: "")), FULL_SPEC),
        (
            PbsBackend(FakeTransport(lambda argv, stdin: ""), gpu_type_resource="model"),
            PBS_FULL_SPEC,
        ),
    ],
    ids=["slurm", "pbs"],
)
def test_the_sandbox_renders_the_stock_templates_unchanged(
    tmp_path: Path, backend: SlurmBackend | PbsBackend, spec: dict[str, object]
) -> None:
    """A site that overrides nothing renders, sandboxed, exactly what hpcbridge renders."""
    job = JobSpec.parse(spec)
    context = backend.template_context(job)
    sandboxed = Renderer(tmp_path).render(backend.template, job, token="t", **context)
    assert sandboxed == Renderer().render(backend.template, job, token="t", **context)
