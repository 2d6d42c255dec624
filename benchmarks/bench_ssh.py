"""SSH transport benchmarks against the OpenSSH client and local Slurm, in the same run.

    .venv/bin/python benchmarks/bench_ssh.py [--status 200] [--submit 200]

Needs the test cluster (tests/cluster/slurm-up.sh) and the loopback sshd
(tests/cluster/sshd-up.sh). Each figure is taken twice: as root (the test-slurm-ssh site;
on a machine whose /root/.bashrc is slow, every SSH command pays for it, since sshd runs
commands through the login shell) and as sshd-up.sh's unprivileged user with an empty home.
The compared commands alternate, so both see the same machine load. Jobs are submitted with
a begin time a day ahead so they stay pending; every job this creates is cancelled at the
end. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import time
from datetime import datetime, timedelta

from timing import timed

from hpcbridge import Cluster, JobSpec, RecordingTransport, SiteConfig
from hpcbridge.backends.slurm import cli
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.ssh import SshTransport

SSHD_DIR = "/var/lib/hpcbridge-test/sshd"
USERS = ("root", "hpcbridge-user")


def pending_spec(name: str) -> JobSpec:
    begin = (datetime.now() + timedelta(days=1)).replace(microsecond=0)
    return JobSpec.parse(
        {"name": name, "command": "true", "begin": begin.isoformat(), "stdout": "/dev/null"}
    )


def ssh_settings(user: str) -> SshTransportConfig:
    settings = SiteConfig.load("test-slurm-ssh").transport
    assert isinstance(settings, SshTransportConfig)
    return settings.model_copy(update={"user": user})


def ssh_site(user: str) -> SiteConfig:
    return SiteConfig.load("test-slurm-ssh").model_copy(update={"transport": ssh_settings(user)})


def openssh(user: str, argv: list[str]) -> list[str]:
    """A fresh OpenSSH client connection running ``argv``, with the client's defaults."""
    return ["ssh", "-F", f"{SSHD_DIR}/ssh_config", "-l", user, "hpcbridge-test", shlex.join(argv)]


def bench_connect(user: str) -> None:
    runs = 10
    fresh = sum(
        timed(lambda: subprocess.run(openssh(user, ["true"]), check=True)) for _ in range(runs)
    )

    def first_command() -> None:
        transport = SshTransport(ssh_settings(user))
        transport.run(["true"])
        transport.close()

    ours = sum(timed(first_command) for _ in range(runs))
    print(
        f"[{user}] connect, log in, run `true`: OpenSSH client {fresh / runs * 1e3:.0f} ms, "
        f"hpcbridge (paramiko) {ours / runs * 1e3:.0f} ms"
    )


def bench_status(user: str, count: int, created: list[str]) -> None:
    """``count`` status queries: hpcbridge on its kept connection vs a fresh ssh each time."""
    ssh = SshTransport(ssh_settings(user))
    transport = RecordingTransport(ssh)
    with Cluster(ssh_site(user), transport=transport) as cluster:
        ids = [cluster.submit(pending_spec("bench-ssh-status")) for _ in range(5)]
        created.extend(ids)
        argv = cli.squeue(ids)
        local = fresh = ours = 0.0
        transport.commands.clear()
        for _ in range(count):
            local += timed(lambda: subprocess.run(argv, capture_output=True, check=True))
            fresh += timed(
                lambda: subprocess.run(openssh(user, argv), capture_output=True, check=True)
            )
            ours += timed(lambda: cluster.status(ids))
        calls = len(transport.commands)
        connections = ssh.connections_made
    print(
        f"[{user}] {count} status queries of {len(ids)} jobs: local squeue "
        f"{local / count * 1e3:.1f} ms each; fresh `ssh host squeue` {fresh:.2f} s "
        f"({fresh / count * 1e3:.1f} ms each); hpcbridge over one kept connection {ours:.2f} s "
        f"({ours / count * 1e3:.1f} ms each, {calls} squeue calls, {connections} connection): "
        f"{fresh / ours:.1f}x faster than fresh ssh (goal >= 10x)"
    )


def bench_submit(user: str, count: int, created: list[str]) -> None:
    """``count`` submissions each way, alternating: over SSH and on this machine."""
    spec = pending_spec("bench-ssh-submit")
    local_site = SiteConfig.load("test-slurm")
    with Cluster(local_site) as local_cluster, Cluster(ssh_site(user)) as remote_cluster:
        created.append(remote_cluster.submit(spec))  # connect before timing
        local = remote = 0.0
        for _ in range(count):
            started = time.perf_counter()
            created.append(local_cluster.submit(spec))
            local += time.perf_counter() - started
            started = time.perf_counter()
            created.append(remote_cluster.submit(spec))
            remote += time.perf_counter() - started
    print(
        f"[{user}] submit {count} jobs each way, alternating: locally {local:.2f} s "
        f"({local / count * 1e3:.1f} ms/job), over SSH {remote:.2f} s "
        f"({remote / count * 1e3:.1f} ms/job), ratio {remote / local:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hpcbridge SSH transport benchmarks")
    parser.add_argument("--status", type=int, default=200, help="status queries each way")
    parser.add_argument("--submit", type=int, default=200, help="jobs to submit each way")
    args = parser.parse_args()
    created: list[str] = []
    try:
        for user in USERS:
            bench_connect(user)
            bench_status(user, args.status, created)
            bench_submit(user, args.submit, created)
    finally:
        for start in range(0, len(created), 500):
            subprocess.run(["scancel", *created[start : start + 500]], check=False)


if __name__ == "__main__":
    main()
