"""Slurm: argv builders (cli), output parsers (parse), and the backend that joins them."""

from hpcbridge.backends.slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
