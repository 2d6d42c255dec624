"""Transports run scheduler commands: on this machine, over SSH, or in users' tests.

``SshTransport`` is imported on first use (PEP 562): it needs paramiko, an optional extra
that is slow to import, and only SSH sites use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcbridge.transports.base import CommandResult, Transport
from hpcbridge.transports.fake import FakeCall, FakeTransport
from hpcbridge.transports.local import LocalTransport
from hpcbridge.transports.recording import RecordingTransport

if TYPE_CHECKING:
    from hpcbridge.transports.ssh import SshTransport

__all__ = [
    "CommandResult",
    "FakeCall",
    "FakeTransport",
    "LocalTransport",
    "RecordingTransport",
    "SshTransport",
    "Transport",
]


def __getattr__(name: str) -> Any:
    if name == "SshTransport":
        from hpcbridge.transports.ssh import SshTransport

        return SshTransport
    raise AttributeError(f"module 'hpcbridge.transports' has no attribute {name!r}")
