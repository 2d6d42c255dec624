"""The executor staging over SFTP (a site with ``shared_filesystem: false``) when its SSH
connection is killed while calls run, on the real Slurm through the loopback sshd: the poller
goes on over a new connection (the SFTP session with it) and the futures still get their
values. A drop in the middle of an SFTP request is retried by SshTransport.sftp, as an upload
cut off is (tests/transports/test_ssh_staging.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

import cloudpickle
import pytest

from hpcbridge import Cluster, SiteConfig
from hpcbridge.transports.ssh import SshTransport

pytestmark = [pytest.mark.slurm, pytest.mark.ssh, pytest.mark.timeout(300)]
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_calls_return_across_a_dropped_connection(
    not_shared_site: SiteConfig, sshd_session_pid: Callable[[SshTransport], int]
) -> None:
    with Cluster(not_shared_site) as cluster, cluster.executor() as pool:
        transport = cluster.transport
        assert isinstance(transport, SshTransport)
        futures = [pool.submit(sleeps, seconds) for seconds in (3, 6)]
        os.kill(sshd_session_pid(transport), signal.SIGKILL)
        assert futures[0].result(timeout=180) == 3
        os.kill(sshd_session_pid(transport), signal.SIGKILL)
        assert futures[1].result(timeout=180) == 6
        assert transport.connections_made >= 3
