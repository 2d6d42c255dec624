"""Transports run scheduler commands: on this machine, over SSH, or in users' tests."""

from hpcbridge.transports.base import CommandResult, Transport
from hpcbridge.transports.fake import FakeCall, FakeTransport
from hpcbridge.transports.local import LocalTransport
from hpcbridge.transports.recording import RecordingTransport

__all__ = [
    "CommandResult",
    "FakeCall",
    "FakeTransport",
    "LocalTransport",
    "RecordingTransport",
    "Transport",
]
