"""One of the processes of test_shared_poll.py: a Cluster with shared polling that waits on
its jobs (or asks their status once), started together with the others.

    python shared_poll_child.py SITE READY_FILE GO_FILE wait|status INTERVAL JOB_ID...

It writes READY_FILE once imported, starts when GO_FILE appears, and prints one JSON line:
what it saw of each job, when it returned, and each scheduler command it ran with when it
started (time.time(), comparable between processes).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpcbridge import Cluster, CommandResult, SiteConfig
from hpcbridge.transports.base import Transport
from hpcbridge.transports.factory import make_transport


class StampingTransport:
    """The site's own transport (local or SSH), noting when each command starts."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.commands: list[tuple[float, list[str]]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        self.commands.append((time.time(), list(argv)))
        return self.inner.run(argv, stdin=stdin, env=env, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


def main(site_name: str, ready: str, go: str, mode: str, interval: str, *job_ids: str) -> None:
    site = SiteConfig.load(site_name)
    transport = StampingTransport(make_transport(site))
    cluster = Cluster(site, transport=transport, shared_poll=True)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    if mode == "wait":
        infos = cluster.wait(list(job_ids), poll_interval=float(interval), timeout=150)
    else:
        infos = cluster.status(list(job_ids), max_age=float(interval))
    returned = time.time()
    seen = {job: [infos[job].state.value, infos[job].exit_code] for job in job_ids}
    print(json.dumps({"seen": seen, "returned": returned, "commands": transport.commands}))
    cluster.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
