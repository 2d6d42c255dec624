"""Writing files so that no reader, and no crash, ever sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``.

    Readers and a crash see the old file or the new one, whole, never a part; the temporary
    file does not outlive a failure. The new file gets the mode a plain ``open()`` would give
    (mkstemp's own is 0600), so reports written from cron stay readable as before.
    """
    directory, name = os.path.split(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process umask (only readable by setting it)."""
    current = os.umask(0)
    os.umask(current)
    return current
