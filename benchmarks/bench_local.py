"""The local backend's status of many finished jobs, against reading their record files raw.

    .venv/bin/python benchmarks/bench_local.py [--jobs 1000]

A status of the local backend reads one small JSON record per job; the raw baseline reads the
same files with json.loads and nothing else, in the same run, so the ratio is what the
backend adds (JobInfo models, states, array totals). No runner is started: the records are
written as a finished job's runner would leave them. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from timing import median_of

from hpcbridge import FakeTransport, JobSpec
from hpcbridge.backends.local import store as st
from hpcbridge.backends.local.backend import LocalBackend


def finished_jobs(folder: Path, count: int) -> tuple[LocalBackend, list[str]]:
    """``count`` finished jobs in a fresh store, written as their runners would leave them."""
    backend = LocalBackend(FakeTransport(lambda argv, stdin: ""), state_dir=folder)
    first = backend.submit("true", JobSpec(name="many", command="true"))
    template = backend.store.members(first)[0]
    template.update({"state": st.COMPLETED, "start": template["submit"], "end": template["submit"]})
    template.update({"exit_code": 0, "exit_signal": 0, "node": "here"})
    for job in range(1, count + 1):
        backend.store.job_dir(job).mkdir(exist_ok=True)
        backend.store.write_record({**template, "id": str(job), "job": job})
    return backend, [str(job) for job in range(1, count + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        backend, ids = finished_jobs(Path(folder), args.jobs)
        files = [backend.store.job_dir(int(job)) / f"{job}.json" for job in ids]
        raw = median_of(5, lambda: [json.loads(path.read_bytes()) for path in files])
        ours = median_of(5, lambda: backend.status(ids))
    print(f"local backend: status of {args.jobs} finished jobs")
    print(f"  raw json.loads of the records  {raw * 1000:7.1f} ms")
    print(f"  LocalBackend.status            {ours * 1000:7.1f} ms   ({ours / raw:.1f}x)")


if __name__ == "__main__":
    main()
