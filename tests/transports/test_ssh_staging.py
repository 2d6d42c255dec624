"""Staging files over SFTP: atomic on the remote side, retried once when the connection dies.

The login node of the tests is this machine, so what landed there is read back directly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hpcbridge import Cluster, JobState, TransportError
from hpcbridge.errors import TransportUnavailable
from hpcbridge.transports.ssh import SshTransport

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]

SessionPid = Callable[[SshTransport], int]


def leftovers(folder: Path) -> list[str]:
    """Temporary upload files still lying in ``folder``."""
    return [path.name for path in folder.iterdir() if path.name.endswith(".part")]


def test_bytes_and_files_land_with_their_modes(ssh_transport: SshTransport, tmp_path: Path) -> None:
    ssh_transport.upload(b"#!/bin/sh\necho hi\n", str(tmp_path / "job.sh"), mode=0o750)
    assert (tmp_path / "job.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "job.sh").stat().st_mode & 0o777 == 0o750
    local = tmp_path / "input.dat"
    local.write_bytes(os.urandom(100_000))
    local.chmod(0o604)
    ssh_transport.upload(local, str(tmp_path / "copy.dat"))
    assert (tmp_path / "copy.dat").read_bytes() == local.read_bytes()
    assert (tmp_path / "copy.dat").stat().st_mode & 0o777 == 0o604
    assert leftovers(tmp_path) == []


def test_a_replaced_file_is_never_seen_half_written(
    ssh_transport: SshTransport, tmp_path: Path
) -> None:
    """A reader polling the path during the upload sees the whole old or the whole new file."""
    size = 16 << 20
    old, new = b"a" * size, b"b" * size
    target = tmp_path / "inputs.bin"
    target.write_bytes(old)
    old_inode = target.stat().st_ino
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            seen.add("old" if data == old else "new" if data == new else f"torn ({len(data)} B)")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ssh_transport.upload(new, str(target))
        deadline = time.monotonic() + 10
        while "new" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)  # until the watcher has read the new file at least once
    finally:
        stop.set()
        watcher.join()
    assert seen == {"old", "new"}
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert leftovers(tmp_path) == []


def test_a_missing_folder_is_named_and_not_retried(
    ssh_transport: SshTransport, tmp_path: Path
) -> None:
    remote = str(tmp_path / "no-such-folder" / "job.sh")
    with pytest.raises(TransportError, match=f"cannot stage {remote} on root@127.0.0.1") as caught:
        ssh_transport.upload(b"x", remote)
    assert not isinstance(caught.value, TransportUnavailable)
    assert ssh_transport.connections_made == 1


def test_an_upload_cut_off_by_a_dropped_connection_is_redone(
    ssh_transport: SshTransport, sshd_session_pid: SessionPid, tmp_path: Path
) -> None:
    data = os.urandom(1 << 20) * 96  # about a second and a half over loopback SFTP
    target = tmp_path / "big.bin"
    session = sshd_session_pid(ssh_transport)  # the connection the upload will use
    threading.Timer(0.3, os.kill, (session, signal.SIGKILL)).start()
    ssh_transport.upload(data, str(target))
    assert ssh_transport.connections_made == 2  # the kill landed during the upload
    assert target.read_bytes() == data
    assert leftovers(tmp_path) == []


@pytest.mark.slurm
def test_a_staged_job_script_and_input_run_on_slurm(
    ssh_transport: SshTransport, workdir: Path
) -> None:
    ssh_transport.upload(b"3\n4\n5\n", str(workdir / "numbers.txt"))
    script = (
        b'#!/bin/bash\nset -e\nsum=0\nwhile read n; do sum=$((sum + n)); done < "$1"\necho "$sum"\n'
    )
    ssh_transport.upload(script, str(workdir / "add.sh"), mode=0o755)
    with Cluster.from_site("test-slurm-ssh", transport=ssh_transport) as cluster:
        job_id = cluster.submit(
            {
                "name": "staged",
                "command": "./add.sh numbers.txt",
                "workdir": str(workdir),
                "stdout": "sum.out",
            }
        )
        assert cluster.wait(job_id, timeout=60)[job_id].state is JobState.COMPLETED
    assert (workdir / "sum.out").read_text() == "12\n"
