"""Checkpoint wrapper overhead: the same job with and without the wrapper, on this machine.

    .venv/bin/python benchmarks/bench_checkpoint.py [--work-mb 3000] [--interval 2] [--runs 3]

The job is fixed work (sha256 of --work-mb of zeros), so extra wall time is the wrapper's cost.
With the wrapper it checkpoints a small state file every --interval seconds, far more often
than a real job would; the cost per checkpoint and the start-up cost measured here are then
scaled to an hour-long job with hourly checkpoints, the case the goal (< 1 %) is about. Runs
alternate (plain, wrapped, plain ...) so both see the same machine load. Scripts are rendered
for the local backend and run with bash directly: no scheduler is involved.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from timing import median_of, timed

from hpcbridge import JobSpec
from hpcbridge.backends.local.backend import LocalBackend
from hpcbridge.jobs.checkpoint import read_events
from hpcbridge.jobs.rendering import Renderer
from hpcbridge.transports import FakeTransport

HOUR = 3600.0


def render(spec: dict[str, Any]) -> str:
    backend = LocalBackend(FakeTransport(lambda argv, stdin: ""), state_dir="/nonexistent")
    job = JobSpec.parse(spec)
    return Renderer().render(backend.template, job, token=None, **backend.template_context(job))


def job(command: str, checkpoint: dict[str, Any] | None) -> str:
    spec: dict[str, Any] = {"name": "bench", "command": command}
    if checkpoint is not None:
        spec["checkpoint"] = {"command": 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"', **checkpoint}
    return render(spec)


def run(folder: Path, script: str, job_id: str) -> None:
    (folder / "job.sh").write_text(script)
    subprocess.run(
        ["bash", "job.sh"],
        cwd=folder,
        env={**os.environ, "HPCBRIDGE_JOB_ID": job_id},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-mb", type=int, default=3000, help="MB of zeros to hash")
    parser.add_argument("--interval", type=int, default=2, help="seconds between checkpoints")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "state").write_bytes(os.urandom(64 * 1024))
        work = f"head -c {args.work_mb}M /dev/zero | sha256sum >/dev/null"
        plain = job(work, None)
        checkpoint = {"interval": f"0:{args.interval}", "keep": 2}
        plain_times: list[float] = []
        wrapped_times: list[float] = []
        for number in range(args.runs):
            plain_times.append(timed(lambda: run(folder, plain, "plain")))
            # A directory per run: a finished run's directory would end the next one at once.
            wrapped = job(work, {**checkpoint, "directory": f"ck{number}"})
            wrapped_times.append(timed(functools.partial(run, folder, wrapped, f"w{number}")))
            print(f"run {number + 1}: plain {plain_times[-1]:.2f} s, wrapped", end=" ")
            print(f"{wrapped_times[-1]:.2f} s")
        commits = [
            e
            for n in range(args.runs)
            for e in read_events(folder / f"ck{n}")
            if e.kind == "commit"
        ]
        per_run = len(commits) / args.runs

        # The start-up cost alone: a trivial job (a fresh job id each run, as restarts count).
        start_plain = median_of(10, lambda: run(folder, job("true", None), "s"))
        trivial = job("true", {"directory": "ck-start"})
        start_wrapped = median_of(
            10, lambda: (run(folder, trivial, "s"), shutil.rmtree(folder / "ck-start"))
        )

    plain_s, wrapped_s = statistics.median(plain_times), statistics.median(wrapped_times)
    overhead = wrapped_s - plain_s
    startup = start_wrapped - start_plain
    per_checkpoint = max(0.0, overhead - startup) / max(per_run, 1)
    hourly = (startup + per_checkpoint) / HOUR * 100
    print(f"job: {plain_s:.2f} s plain, {wrapped_s:.2f} s wrapped (median of {args.runs})")
    print(
        f"end to end: +{overhead:.2f} s = {overhead / plain_s * 100:.2f} % with "
        f"{per_run:.0f} checkpoints per run (one every {args.interval} s)"
    )
    print(
        f"wrapper start-up: {startup * 1000:.0f} ms; one checkpoint: {per_checkpoint * 1000:.0f} ms"
    )
    print(f"an hour-long job with hourly checkpoints: {hourly:.3f} % overhead (goal < 1 %)")


if __name__ == "__main__":
    main()
