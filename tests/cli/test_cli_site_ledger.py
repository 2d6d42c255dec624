"""--site and --ledger: every verb that reaches a cluster takes --site, every verb that reads or
writes the ledger takes --ledger, both spelt and defaulted alike, and they work where they were
missing (the workflow verbs after submit, advise).

The commands are read from the click tree, so a new verb must be placed in EXPECTED below: the
test fails until someone decides which of the two it takes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from test_cli_bad_input import command_of, leaf_commands

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger

SITE, LEDGER = "--site", "--ledger"
CLUSTER_AND_LEDGER = frozenset({SITE, LEDGER})
CLUSTER = frozenset({SITE})
LEDGER_ONLY = frozenset({LEDGER})
NEITHER: frozenset[str] = frozenset()

EXPECTED = {
    # one job at a time, on the site's scheduler
    ("render",): CLUSTER,  # the site's templates and partition defaults
    ("submit",): CLUSTER_AND_LEDGER,  # the ledger's usage, where the site has budgets
    ("status",): CLUSTER,
    ("wait",): CLUSTER,
    ("cancel",): CLUSTER,
    ("hold",): CLUSTER,
    ("release",): CLUSTER,
    ("requeue",): CLUSTER,
    ("site", "check"): CLUSTER,
    ("top",): CLUSTER,  # the site's running jobs
    ("site", "list"): NEITHER,  # lists the names --site accepts
    # workflows: stages on a cluster, records in state files or the ledger
    ("workflow", "submit"): CLUSTER_AND_LEDGER,
    ("workflow", "status"): CLUSTER_AND_LEDGER,
    ("workflow", "resume"): CLUSTER_AND_LEDGER,
    ("workflow", "watch"): CLUSTER_AND_LEDGER,
    ("workflow", "show"): CLUSTER_AND_LEDGER,
    ("workflow", "frames"): CLUSTER_AND_LEDGER,  # --resubmit on the workflow's own site
    ("checkpoint", "list"): NEITHER,  # a directory on this machine
    ("checkpoint", "verify"): NEITHER,
    ("checkpoint", "history"): CLUSTER,  # sacct of the site
    ("ledger", "upgrade"): LEDGER_ONLY,
    ("ledger", "import-swf"): LEDGER_ONLY,  # a trace file, filed under --cluster
    ("ledger", "sync"): CLUSTER_AND_LEDGER,
    ("ledger", "steps"): LEDGER_ONLY,  # a job's steps as synced, filed under --cluster
    ("report", "usage"): LEDGER_ONLY,  # clusters in the ledger: --cluster
    ("report", "grant"): LEDGER_ONLY,
    ("report", "sla"): LEDGER_ONLY,  # shares from a site's clients: --clients-of
    ("report", "energy"): CLUSTER_AND_LEDGER,  # the site's watts and tariff, its cluster's runs
    ("forecast", "usage"): LEDGER_ONLY,
    ("forecast", "budget"): LEDGER_ONLY,
    ("forecast", "evaluate"): NEITHER,  # a trace file only
    ("forecast", "workflow"): CLUSTER_AND_LEDGER,  # the site's walltimes, the ledger's history
    ("advise",): CLUSTER_AND_LEDGER,  # the site's default walltime, the ledger's history
    ("priority", "levels"): CLUSTER,
    ("priority", "set"): CLUSTER_AND_LEDGER,  # jobs, or a workflow's record
    ("priority", "rerank"): CLUSTER_AND_LEDGER,  # a campaign's records; changes in the ledger
    ("priority", "deadline"): CLUSTER_AND_LEDGER,  # the deadline kept in the ledger
    ("priority", "deadlines"): CLUSTER_AND_LEDGER,
    ("deadlines", "check"): CLUSTER_AND_LEDGER,  # the scheduler's estimate, the ledger's history
    ("budget", "show"): CLUSTER_AND_LEDGER,  # the queue's commitments, the ledger's usage
    ("budget", "release"): CLUSTER_AND_LEDGER,
    ("budget", "sync"): CLUSTER_AND_LEDGER,  # limits from the ledger's allocations
    ("budget", "allocate"): LEDGER_ONLY,
    ("clients", "show"): CLUSTER,  # the site's clients; the scheduler's nodes, queue, shares
    ("clients", "sync"): CLUSTER,  # shares from the site config, written with sacctmgr
}

# A workflow's record names its site; $HPCBRIDGE_SITE, set for new work, must not redirect it.
RECORDED_SITE = {
    ("workflow", "status"),
    ("workflow", "resume"),
    ("workflow", "watch"),
    ("workflow", "show"),
    ("workflow", "frames"),
    ("priority", "set"),  # a workflow's own site, else (for job ids) $HPCBRIDGE_SITE
    ("priority", "rerank"),  # the campaign's workflows' own site
}


def options_of(command: click.Command) -> dict[str, click.Option]:
    return {
        name: param
        for param in command.params
        if isinstance(param, click.Option)
        for name in param.opts
        if name in (SITE, LEDGER)
    }


def test_every_verb_takes_site_and_ledger_as_its_work_needs() -> None:
    found = {path: frozenset(options_of(command_of(path))) for path in leaf_commands(main)}
    assert found == EXPECTED


def test_site_and_ledger_are_the_same_option_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCBRIDGE_SITE", "from-env")
    monkeypatch.setenv("HPCBRIDGE_LEDGER", "sqlite:///from-env.sqlite")
    for path in leaf_commands(main):
        command = command_of(path)
        context = click.Context(command)
        for name, option in options_of(command).items():
            assert option.name == ("site" if name == SITE else "ledger_url"), path
            assert option.help is not None
            assert option.help.startswith(
                "A site name from site_configs/" if name == SITE else ""
            ), path
            if name == LEDGER:
                assert option.help.endswith(": sqlite:///PATH or postgresql://USER@HOST/DB.")
            default = option.get_default(context, call=True)
            if name == LEDGER:
                assert default == "sqlite:///from-env.sqlite", path
            else:
                assert default == (None if path in RECORDED_SITE else "from-env"), path


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for variable in ("HPCBRIDGE_SITE", "HPCBRIDGE_LEDGER", "HPCBRIDGE_WORKFLOW_DIR"):
        monkeypatch.delenv(variable, raising=False)
    return CliRunner(
        env={
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )


def invoke(runner: CliRunner, *argv: str, code: int = 0) -> click.testing.Result:
    result = runner.invoke(main, list(argv))
    assert result.exit_code == code, f"hpcbridge {' '.join(argv)}: {result.output}"
    return result


def stage_states(runner: CliRunner, workflow_id: str, *store: str) -> dict[str, str]:
    shown = invoke(runner, "workflow", "status", workflow_id, "--site", "local", "--json", *store)
    return {stage["stage"]: stage["state"] for stage in json.loads(shown.stdout)["stages"]}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("store", ["state files", "ledger"])
def test_workflow_verbs_take_site_and_ledger(runner: CliRunner, tmp_path: Path, store: str) -> None:
    flow = tmp_path / "flow.yaml"
    stages = [
        {"name": "a", "command": "true", "workdir": str(tmp_path)},
        {"name": "b", "command": "true", "depends_on": "a", "workdir": str(tmp_path)},
    ]
    flow.write_text(yaml.safe_dump({"name": "flags", "stages": stages}))
    where = ["--ledger", f"sqlite:///{tmp_path}/ledger.sqlite"] if store == "ledger" else []
    submitted = invoke(runner, "workflow", "submit", str(flow), "--site", "local", "--json", *where)
    workflow_id = json.loads(submitted.stdout)["workflow_id"]

    deadline = time.monotonic() + 90
    while (states := stage_states(runner, workflow_id, *where)) != {
        "a": "COMPLETED",
        "b": "COMPLETED",
    }:
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    resumed = invoke(runner, "workflow", "resume", workflow_id, "--site", "local", *where)
    assert resumed.stdout == f"workflow {workflow_id}: nothing to resubmit\n"
    shown = invoke(
        runner, "workflow", "show", workflow_id, "--site", "local", "--format", "json", *where
    )
    assert {stage["name"] for stage in json.loads(shown.stdout)["stages"]} == {"a", "b"}

    # Another cluster's job ids are other jobs: status would cancel them, resume wire to them.
    for verb in ("status", "resume", "show"):
        refused = invoke(
            runner, "workflow", verb, workflow_id, "--site", "test-slurm", *where, code=2
        )
        assert "slurm cluster 'hpcbridge'" in refused.output, refused.output
        assert "submitted to local cluster 'local'" in refused.output, refused.output


def test_advise_asks_the_site_for_the_walltime_a_job_would_get(
    runner: CliRunner, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    start = datetime.now(UTC) - timedelta(days=10)
    with Ledger.open(url) as ledger:
        ledger.upsert_attempts(
            "c",
            "slurm",
            [
                AttemptRecord(
                    job_id=str(n),
                    attempt=1,
                    state=JobState.COMPLETED,
                    user="alice",
                    name="sim",
                    submit=start + timedelta(hours=2 * n),
                    start=start + timedelta(hours=2 * n),
                    end=start + timedelta(hours=2 * n + 1),
                    alloc_cpus=1,
                    req_walltime_s=12 * 3600,
                )
                for n in range(3)
            ],
            source="t",
        )
    job = tmp_path / "job.yaml"
    job.write_text("name: sim\ncommand: ./sim\n")  # no walltime of its own
    site = tmp_path / "batch.yaml"
    site.write_text(
        "name: batch\nscheduler: slurm\ndefault_partition: long\n"
        "partitions:\n  long:\n    default_walltime: '12:00:00'\n"
    )
    common = ["--user", "alice", "--ledger", url]
    unknown = invoke(runner, "advise", str(job), *common, "--site", "local", code=9)
    assert "no walltime requested" in unknown.output
    advised = invoke(runner, "advise", str(job), *common, "--site", str(site), "--json")
    assert json.loads(advised.stdout)["requested_s"] == 12 * 3600
    assert json.loads(advised.stdout)["suggested_s"] == 5400
