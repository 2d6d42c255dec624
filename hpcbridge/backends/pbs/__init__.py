"""PBS (OpenPBS, PBS Pro, Torque-style output): argv builders, parsers, and the backend."""

from hpcbridge.backends.pbs.backend import PbsBackend

__all__ = ["PbsBackend"]
