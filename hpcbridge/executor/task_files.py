"""Where an executor's call folders live and how the client reaches their files: on its own
filesystem, which the compute nodes share (LocalTaskFiles), or on the cluster's, through the
SSH transport's one SFTP session (SftpTaskFiles), for a site whose ``transport`` says
``shared_filesystem: false``.

Either way the job sees plain paths on the cluster; only the client's side differs. Over SFTP
every look is a round trip, so ``finished`` asks about all of a poll's folders at once: one
listing of the executor's folder (a task folder's modification time moves when its job starts
writing stderr and when its result is renamed in), then a ``stat`` of the result only in the
folders that changed lately (see SftpTaskFiles).
"""

from __future__ import annotations

import logging
import shutil
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from hpcbridge.errors import HpcBridgeError, SpecError
from hpcbridge.executor import checkpointing, payload
from hpcbridge.files import write_atomically
from hpcbridge.jobs.checkpoint import ATTEMPTS_LOG, Event, parse_events, read_events
from hpcbridge.site import SshTransportConfig, TransportConfig

if TYPE_CHECKING:
    import paramiko

    from hpcbridge.transports.base import Transport
    from hpcbridge.transports.ssh import SshTransport

log = logging.getLogger(__name__)

DEFAULT_ROOT = ".hpcbridge-tasks"
# SFTP (version 3, OpenSSH's) gives modification times in whole seconds.
_MTIME_RESOLUTION_S = 1.0


class TaskFiles(Protocol):
    """The client's access to the call folders (paths as the cluster sees them)."""

    def put_call(self, folder: PurePath, data: bytes) -> None:
        """Make ``folder`` (and its parents) and write its call file, whole or not at all."""
        ...

    def finished(self, folders: Sequence[PurePath]) -> set[PurePath]:
        """Those of ``folders`` whose result file is there (at most a poll late)."""
        ...

    def has_result(self, folder: PurePath) -> bool:
        """The result file is in ``folder`` now (asked afresh, never from what was seen)."""
        ...

    def read(self, path: PurePath) -> bytes | None:
        """The file's bytes, or None if it is not there."""
        ...

    def tail(self, path: PurePath, size: int) -> bytes:
        """At most the last ``size`` bytes of the file (none if it is not there)."""
        ...

    def events(self, folder: PurePath) -> list[Event]:
        """The checkpoint wrapper's attempts log of a checkpointable call (none for others)."""
        ...

    def remove(self, folder: PurePath) -> None:
        """Remove ``folder`` and everything in it, as far as possible (a leftover is no error)."""
        ...


def for_site(
    config: TransportConfig, transport: Transport, root: str | PurePath | None
) -> tuple[TaskFiles, PurePath]:
    """The files of a cluster's executor, and the folder its executors' folders go under:
    ``root``, else the site's ``remote_root`` when the cluster does not share the client's
    filesystem, else ``./.hpcbridge-tasks``."""
    if isinstance(config, SshTransportConfig) and not config.shared_filesystem:
        assert config.remote_root is not None  # the config's validator requires it
        folder = PurePosixPath(root) if root is not None else config.remote_root
        if not folder.is_absolute():
            raise SpecError(
                f"root={str(root)!r}: on a site whose filesystem the client does not share, "
                "give an absolute path on the cluster (or leave root out for the site's "
                f"remote_root, {config.remote_root})"
            )
        return SftpTaskFiles(_ssh(transport)), folder
    local = Path(root) if root is not None else Path.cwd() / DEFAULT_ROOT
    return LOCAL, local.resolve()


def _ssh(transport: Transport) -> SshTransport:
    from hpcbridge.transports.ssh import SshTransport  # paramiko loads only for such a site

    if not isinstance(transport, SshTransport):
        raise SpecError(
            f"the site's transport says shared_filesystem: false, but the cluster runs its "
            f"commands through a {type(transport).__name__}, which cannot stage files: give "
            "the Cluster the site's SSH transport"
        )
    return transport


class LocalTaskFiles:
    """Call folders on this machine's filesystem, which the compute nodes share."""

    def put_call(self, folder: PurePath, data: bytes) -> None:
        Path(folder).mkdir(parents=True)
        write_atomically(Path(folder) / payload.CALL_FILE, data)

    def finished(self, folders: Sequence[PurePath]) -> set[PurePath]:
        return {folder for folder in folders if self.has_result(folder)}

    def has_result(self, folder: PurePath) -> bool:
        return (Path(folder) / payload.RESULT_FILE).exists()

    def read(self, path: PurePath) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def tail(self, path: PurePath, size: int) -> bytes:
        try:
            with Path(path).open("rb") as stream:
                stream.seek(max(0, stream.seek(0, 2) - size))
                return stream.read()
        except FileNotFoundError:
            return b""

    def events(self, folder: PurePath) -> list[Event]:
        checkpoints = Path(folder) / checkpointing.CHECKPOINTS
        return read_events(checkpoints) if checkpoints.is_dir() else []

    def remove(self, folder: PurePath) -> None:
        shutil.rmtree(folder, ignore_errors=True)


LOCAL = LocalTaskFiles()


@dataclass(frozen=True)
class _Seen:
    """A call folder's modification time as a listing showed it, since when (this machine's
    monotonic clock, once the listing was back), and whether a look for the result made a
    whole second after that found none: nothing written since can hide behind that time."""

    mtime: int | None
    since: float
    looked_past: bool = False


class SftpTaskFiles:
    """Call folders on the cluster, reached over the SSH transport's kept SFTP session.

    ``finished`` looks for a result only in the folders whose modification time moved. That
    time has whole seconds, so a result renamed in during the second of the last look leaves
    it as it was: a folder is looked into again at each poll until one look comes a second
    after its time was first seen (the listing came back after that second began, so the look
    comes after it ended), whatever the two machines' clocks say."""

    def __init__(self, transport: SshTransport) -> None:
        self._transport = transport
        self._made: set[PurePath] = set()
        # Only the poller's thread looks (finished) and removes: no lock for this.
        self._seen: dict[PurePath, _Seen] = {}

    def put_call(self, folder: PurePath, data: bytes) -> None:
        if folder.parent not in self._made:
            self._transport.sftp(
                lambda sftp: _make_folders(sftp, folder.parent), f"make folder {folder.parent}"
            )
            self._made.add(folder.parent)
        self._transport.sftp(lambda sftp: sftp.mkdir(str(folder)), f"make folder {folder}")
        self._transport.upload(data, str(folder / payload.CALL_FILE))

    def finished(self, folders: Sequence[PurePath]) -> set[PurePath]:
        by_parent: dict[PurePath, list[PurePath]] = {}
        for folder in folders:
            by_parent.setdefault(folder.parent, []).append(folder)
        found = set()
        for parent, group in by_parent.items():
            modified = {entry.filename: entry.st_mtime for entry in self._listing(parent)}
            listed = time.monotonic()
            for folder in group:
                if folder.name not in modified:
                    continue
                seen = self._seen.get(folder)
                if seen is None or seen.mtime != modified[folder.name]:
                    seen = _Seen(modified[folder.name], listed)
                elif seen.looked_past:
                    continue
                looking = time.monotonic()
                if self.has_result(folder):
                    found.add(folder)
                past = looking >= seen.since + _MTIME_RESOLUTION_S
                self._seen[folder] = _Seen(seen.mtime, seen.since, past)
        return found

    def _listing(self, folder: PurePath) -> list[paramiko.SFTPAttributes]:
        """What is in ``folder``, with each entry's attributes: one round trip."""
        return self._transport.sftp(lambda sftp: sftp.listdir_attr(str(folder)), f"list {folder}")

    def has_result(self, folder: PurePath) -> bool:
        try:
            self._transport.sftp(
                lambda sftp: sftp.stat(str(folder / payload.RESULT_FILE)), f"look into {folder}"
            )
        except FileNotFoundError:
            return False
        return True

    def read(self, path: PurePath) -> bytes | None:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(str(path), "rb") as stream:
                stream.prefetch()
                return bytes(stream.read())

        try:
            return self._transport.sftp(read, f"read {path}")
        except FileNotFoundError:
            return None

    def tail(self, path: PurePath, size: int) -> bytes:
        def tail(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(str(path), "rb") as stream:
                stream.seek(max(0, (stream.stat().st_size or 0) - size))
                return bytes(stream.read())

        try:
            return self._transport.sftp(tail, f"read {path}")
        except FileNotFoundError:
            return b""

    def events(self, folder: PurePath) -> list[Event]:
        data = self.read(folder / checkpointing.CHECKPOINTS / ATTEMPTS_LOG)
        return [] if data is None else parse_events(data.decode(errors="replace"))

    def remove(self, folder: PurePath) -> None:
        self._seen.pop(folder, None)
        try:
            self._transport.sftp(lambda sftp: _remove_tree(sftp, str(folder)), f"remove {folder}")
        except (FileNotFoundError, HpcBridgeError) as exc:
            log.warning("could not remove the call folder %s: %s", folder, exc)


def _make_folders(sftp: paramiko.SFTPClient, folder: PurePath) -> None:
    """``mkdir -p``: the missing folders from the top down (one another made is no error)."""
    missing = []
    while not _exists(sftp, folder):
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            sftp.mkdir(str(path))
        except OSError:
            if not _exists(sftp, path):  # else made by another at the same moment: no error
                raise


def _exists(sftp: paramiko.SFTPClient, path: PurePath) -> bool:
    try:
        sftp.stat(str(path))
    except FileNotFoundError:
        return False
    return True


def _remove_tree(sftp: paramiko.SFTPClient, folder: str) -> None:
    for entry in sftp.listdir_attr(folder):
        path = f"{folder}/{entry.filename}"
        if stat.S_ISDIR(entry.st_mode or 0):
            _remove_tree(sftp, path)
        else:
            sftp.remove(path)
    sftp.rmdir(folder)
