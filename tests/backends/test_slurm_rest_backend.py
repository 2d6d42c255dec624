"""The REST driver on the real test cluster's slurmrestd (tests/cluster/slurm-up.sh starts it
on 127.0.0.1:6820 with JWT auth): what goes over HTTP, what still takes the CLI and why,
and its tokens. The contract suite runs on it too (tests/contract, harness slurm-rest)."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hpcbridge import (
    Cluster,
    JobState,
    LocalTransport,
    RecordingTransport,
    SchedulerError,
    SchedulerUnavailable,
    SiteConfig,
)
from hpcbridge.backends.slurm import rest_api
from hpcbridge.backends.slurm.rest import SlurmRestBackend

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


def rest_site(**options: Any) -> SiteConfig:
    site = SiteConfig.load("test-slurm-rest")
    return site.model_copy(update={"slurm": site.slurm.model_copy(update=options)})


@pytest.fixture
def recorded() -> Iterator[tuple[Cluster, RecordingTransport]]:
    transport = RecordingTransport(LocalTransport())
    with Cluster(rest_site(), transport=transport) as cluster:
        yield cluster, transport


def spec(name: str, workdir: Path, command: str = "true", **fields: object) -> dict[str, object]:
    return {"name": name, "command": command, "workdir": str(workdir), **fields}


def cli_calls(transport: RecordingTransport) -> list[str]:
    """The commands run besides making the token (and sacct for jobs slurmctld let go)."""
    return [
        " ".join(argv[:2])
        for argv in transport.commands
        if argv[:2] != ["scontrol", "token"] and argv[0] != "sacct"
    ]


def test_submit_status_hold_release_priority_cancel_all_go_over_http(
    recorded: tuple[Cluster, RecordingTransport], workdir: Path
) -> None:
    cluster, transport = recorded
    blocker = cluster.submit(spec("rest-blocker", workdir, "sleep 300"))
    held = cluster.submit(spec("rest-held", workdir, "echo done > held.txt", hold=True))
    assert cluster.status(held)[held].held
    cluster.set_priority([held], "high")  # QOS high (test-slurm-rest.yaml)
    qos = subprocess.run(
        ["squeue", "--noheader", "-j", held, "--format=%q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert qos.stdout.strip() == "high"
    cluster.release(held)
    assert cluster.wait(held, timeout=90)[held].state is JobState.COMPLETED
    assert (workdir / "held.txt").read_text() == "done\n"
    cluster.cancel(blocker)
    assert cluster.wait(blocker, timeout=90)[blocker].state is JobState.CANCELLED
    assert cli_calls(transport) == []
    assert transport.count("scontrol") == 1  # the token, made once


def test_a_batch_shell_signal_goes_to_sbatch_and_the_log_says_why(
    recorded: tuple[Cluster, RecordingTransport], workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, transport = recorded
    caplog.set_level(logging.INFO, logger="hpcbridge.backends.slurm.rest")
    job_id = cluster.submit(spec("rest-signal", workdir, signal="B:USR1@30"))
    assert cluster.wait(job_id, timeout=90)[job_id].state is JobState.COMPLETED
    assert transport.count("sbatch") == 1
    assert isinstance(cluster.backend, SlurmRestBackend)
    assert cluster.backend.cli_submissions == 1
    assert "rest-signal goes to sbatch: --signal=B:USR1@30" in caplog.text


def test_a_token_made_here_is_renewed_before_it_expires() -> None:
    transport = RecordingTransport(LocalTransport())
    with Cluster(rest_site(token_lifespan=2), transport=transport) as cluster:
        first = cluster.backend.describe()
        deadline = time.monotonic() + 30
        while transport.count("scontrol") < 2 and time.monotonic() < deadline:
            assert "Slurm 22.05" in cluster.backend.describe()  # never refused meanwhile
            time.sleep(0.2)
    assert transport.count("scontrol") == 2
    assert first.startswith("slurmrestd v0.0.38 at http://127.0.0.1:6820: Slurm 22.05")
    assert "UP" in first


def test_an_expired_site_token_is_named_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    made = subprocess.run(
        ["scontrol", "token", "lifespan=2"], capture_output=True, text=True, check=True
    )
    token = made.stdout.strip().partition("SLURM_JWT=")[2]
    _, expires = rest_api.token_claims(token)
    assert expires is not None
    while datetime.now(UTC) <= expires:  # until it has really expired
        time.sleep(0.2)
    monkeypatch.setenv("HPCBRIDGE_TEST_JWT", token)
    with (
        Cluster(rest_site(token_env="HPCBRIDGE_TEST_JWT")) as cluster,
        pytest.raises(SchedulerError, match=r"JWT in \$HPCBRIDGE_TEST_JWT expired at"),
    ):
        cluster.status(["1"])


def test_an_unreachable_slurmrestd_is_transient_and_named() -> None:
    site = rest_site(rest_url="http://127.0.0.1:9").model_copy(update={"submit_retries": 1})
    with Cluster(site) as cluster, pytest.raises(SchedulerUnavailable) as caught:
        cluster.status(["1"])
    assert caught.value.transient
    assert "slurmrestd at http://127.0.0.1:9 is unreachable" in str(caught.value)


def test_the_users_jobs_for_a_shared_snapshot_are_those_squeue_me_lists(
    recorded: tuple[Cluster, RecordingTransport], workdir: Path
) -> None:
    cluster, transport = recorded
    job_id = cluster.submit(spec("rest-mine", workdir, "sleep 300"))
    assert isinstance(cluster.backend, SlurmRestBackend)
    listed = cluster.backend.list_jobs()
    squeue = subprocess.run(
        ["squeue", "--me", "--array", "--states=all", "--noheader", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    cluster.cancel(job_id)
    assert listed[job_id].name == "rest-mine"
    assert set(listed) == set(squeue.stdout.split())
    assert cli_calls(transport) == []
