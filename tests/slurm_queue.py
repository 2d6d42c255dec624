"""What the real test Slurm holds, asked directly with squeue: the tests' independent witness."""

from __future__ import annotations

import subprocess


def jobs_named(name: str) -> list[str]:
    """Ids of every job with this name that slurmctld still knows, finished ones included."""
    listed = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()
