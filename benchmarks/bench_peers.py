"""hpcbridge against raw Slurm commands and its peers (psij-python, pysqa, submitit), in one run.

    .venv/bin/python benchmarks/bench_peers.py [--jobs 1000] [--rounds 5] [--reps 5]

Needs the test cluster (tests/cluster/slurm-up.sh). Each peer lives in its own venv under
~/.cache/hpcbridge-bench/<name>, made here from PyPI when missing (never in the project's
venv or dependencies). It then:

1. submits ``--jobs`` held jobs (``sbatch --hold --wrap true``);
2. in interleaved rounds, runs one small driver script per tool with that tool's own Python,
   which sets the tool up, makes one untimed call, then times ``--reps`` calls inside the
   process (interpreter start and imports excluded):
   - status of all the held jobs: raw ``squeue --jobs=<ids>`` with hpcbridge's fields (the
     baseline), ``Cluster.status(ids)``, psij's own poll (its status command and parser,
     what its poll thread runs), pysqa's ``get_status_of_jobs`` and submitit's
     ``SlurmInfoWatcher.update`` (one sacct) then each job's state;
   - one submit of a job that waits a day to start (``--begin``): raw ``sbatch`` of the
     script hpcbridge renders, ``Cluster.submit``, psij ``JobExecutor.submit``, pysqa
     ``submit_job``, submitit ``SlurmExecutor.submit`` (submitit sleeps between
     submissions, its ``_throttling``: that is part of what it costs);
   - one Python call's round trip, ``pow(2, 10)`` run as a job and its result read back:
     raw ``sbatch --wrap`` of the interpreter writing a file, polled every 0.25 s (the
     baseline), hpcbridge's ``Cluster.executor().submit(...).result()`` and submitit's
     ``SlurmExecutor.submit(...).result()``; psij and pysqa run commands, not functions;
3. measures each tool's import (``from hpcbridge import Cluster, JobSpec``, ``import psij``
   ...) as a fresh process against ``python -c pass`` of the same interpreter, interleaved;
4. prints the medians with ratios against the raw commands, and cancels every job it made.

A peer that cannot be installed or driven gets the reason in its column, not a crash. Run by
hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcbridge import Cluster, JobSpec
from hpcbridge.backends.slurm.backend import LISTING_FROM

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "hpcbridge-bench"
UTC = {**os.environ, "TZ": "UTC"}


@dataclass
class Tool:
    """One column of the table: how to get its Python, import it and drive it."""

    name: str
    requirement: str | None  # pip requirement of a peer; None for raw and hpcbridge
    import_line: str
    driver: str  # Python source; gets argv [op, ids_file, reps, workdir]
    python: str = sys.executable
    problem: str | None = None  # why it cannot be measured
    results: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)  # ids of the jobs its submits created


# Every driver prints one JSON object: {"times": [seconds...], "note": "..."} or {"error": ...}.
DRIVER_HEAD = """
import json, sys, time, traceback
op, ids_file, reps, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ids = open(ids_file).read().split()
class Made(list):
    def append(self, job_id):
        print(f"made {job_id}", file=sys.stderr, flush=True)
        super().append(job_id)
def timed(call, reps):
    call()  # untimed: first-use costs are the import row's business
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - started)
    return times, answer
try:
"""
DRIVER_TAIL = """
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300],
                      "trace": traceback.format_exc()[-2000:]}))
"""

RAW = """
    import os, subprocess
    env = {**os.environ, "TZ": "UTC"}
    sep = "\\x1f"
    fields = "%i %F %K %j %T %r %N %P %a %V %S %e %k".split()
    if op.startswith("status"):
        argv = ["squeue", "--noheader", "--array", "--states=all", "--jobs=" + ",".join(ids),
                "--format=" + sep.join(fields)]
        if op == "status-me":  # the listing hpcbridge reads for many ids
            argv[4] = "--me"
        def call():
            return subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
        times, out = timed(call, reps)
        note = f"{len([l for l in out.splitlines() if l.strip()])} rows"
    elif op == "call":
        import pathlib, shlex, tempfile
        made = Made()
        def call():
            out = pathlib.Path(tempfile.mkdtemp(dir=workdir), "out")  # new in every round
            wrap = (f"{shlex.quote(sys.executable)} -c 'print(pow(2, 10))' > {out}.tmp"
                    f" && mv {out}.tmp {out}")
            done = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", wrap],
                                  capture_output=True, text=True, check=True)
            made.append(done.stdout.strip())
            while not out.exists():
                time.sleep(0.25)
            return int(out.read_text())
        times, answer = timed(call, reps)
        note = f"returned {answer}"
    else:
        script = open(workdir + "/raw.sh").read()
        made = Made()
        def call():
            done = subprocess.run(["sbatch", "--parsable"], input=script, text=True,
                                  capture_output=True, check=True)
            made.append(done.stdout.strip())
        times, _ = timed(call, reps)
        note = "jobs " + " ".join(made)
    print(json.dumps({"times": times, "note": note}))
"""

HPCBRIDGE = """
    from hpcbridge import Cluster, JobSpec
    cluster = Cluster.from_site("test-slurm")
    if op == "status":
        times, answer = timed(lambda: cluster.status(ids), reps)
        states = sorted({f"{i.state.value}{' held' if i.held else ''}" for i in answer.values()})
        note = f"{len(answer)} jobs: {', '.join(states)}"
    elif op == "call":
        with cluster.executor(root=workdir + "/hpcbridge-tasks") as pool:
            times, answer = timed(lambda: pool.submit(pow, 2, 10).result(), reps)
        note = f"returned {answer}"
    else:
        from datetime import datetime, timedelta
        begin = (datetime.now() + timedelta(days=1)).replace(microsecond=0)
        spec = JobSpec(name="bench-peers", command="true", begin=begin, stdout="/dev/null")
        made = Made()
        times, _ = timed(lambda: made.append(cluster.submit(spec)), reps)
        note = "jobs " + " ".join(made)
    print(json.dumps({"times": times, "note": note}))
"""

PSIJ = """
    import os
    from psij import Job, JobAttributes, JobExecutor, JobSpec
    executor = JobExecutor.get_instance("slurm")
    if op == "status":
        def call():  # what psij's poll thread runs for every tracked job at once
            out = executor._run_command(executor.get_status_command(ids))
            return executor.parse_status_output(0, out)
        times, answer = timed(call, reps)
        wanted = set(ids)
        states = sorted({str(s.state) for k, s in answer.items() if k in wanted})
        note = f"{len(wanted & set(answer))} jobs: {', '.join(states)}"
    else:
        made = Made()
        def call():
            job = Job(JobSpec(name="bench-peers", executable="/bin/true", directory=workdir,
                              attributes=JobAttributes(custom_attributes={
                                  "slurm.begin": "now+1day"})))
            executor.submit(job)
            made.append(job.native_id)
        times, _ = timed(call, reps)
        note = "jobs " + " ".join(made)
    print(json.dumps({"times": times, "note": note}))
    os._exit(0)  # psij's poll thread would keep the process alive
"""

PYSQA = """
    from pysqa import QueueAdapter
    from pysqa.wrapper.slurm import template
    adapter = QueueAdapter(queue_type="slurm")
    if op == "status":
        numbers = [int(i) for i in ids]
        times, answer = timed(lambda: adapter.get_status_of_jobs(process_id_lst=numbers), reps)
        note = f"{len(answer)} jobs: {', '.join(sorted({str(s) for s in answer}))}"
    else:
        held = template.replace("#SBATCH --ntasks", "#SBATCH --begin=now+1day\\n#SBATCH --ntasks")
        made = Made()
        def call():
            made.append(str(adapter.submit_job(job_name="bench-peers", working_directory=workdir,
                        cores=1, command="true", partition="debug",
                        submission_template=held)))
        times, _ = timed(call, reps)
        note = "jobs " + " ".join(made)
    print(json.dumps({"times": times, "note": note}))
"""

SUBMITIT = """
    import submitit
    from submitit.slurm.slurm import SlurmInfoWatcher
    if op == "status":
        def call():
            watcher = SlurmInfoWatcher()
            for job_id in ids:
                watcher.register_job(job_id)
            watcher.update()  # one sacct for all of them
            return {job_id: watcher.get_state(job_id, mode="cache") for job_id in ids}
        times, answer = timed(call, reps)
        note = f"{len(answer)} jobs: {', '.join(sorted(set(answer.values())))}"
    elif op == "call":
        executor = submitit.SlurmExecutor(folder=workdir + "/submitit-calls")
        executor.update_parameters(partition="debug", time=10, job_name="bench-peers")
        made = Made()
        def call():
            job = executor.submit(pow, 2, 10)
            made.append(job.job_id)
            return job.result()
        times, answer = timed(call, reps)
        note = f"returned {answer}"
    else:
        executor = submitit.SlurmExecutor(folder=workdir + "/submitit")
        executor.update_parameters(partition="debug", time=10, job_name="bench-peers",
                                   additional_parameters={"begin": "now+1day"})
        made = Made()
        times, _ = timed(lambda: made.append(executor.submit(int, 0).job_id), reps)
        note = "jobs " + " ".join(made)
    print(json.dumps({"times": times, "note": note}))
"""

PEERS = [
    ("psij", "psij-python==0.9.11", "from psij import Job, JobExecutor, JobSpec", PSIJ),
    ("pysqa", "pysqa==1.1.1", "from pysqa import QueueAdapter", PYSQA),
    ("submitit", "submitit==1.5.4", "import submitit", SUBMITIT),
]


CALLERS = ("raw CLI", "hpcbridge", "submitit")  # the tools that run a Python call as a job


def base_python() -> str:
    """The interpreter the project's venv was made from, for the peers' venvs."""
    return getattr(sys, "_base_executable", sys.executable)


def ensure_venv(tool: Tool) -> None:
    """The peer's own venv, made and filled from PyPI if missing; tool.problem says why not."""
    assert tool.requirement is not None
    home = CACHE / tool.name
    python = home / "bin" / "python"
    stamp = home / "hpcbridge-bench-requirement"
    tool.python = str(python)
    if python.exists() and stamp.exists() and stamp.read_text() == tool.requirement:
        return
    print(f"setting up {home} with {tool.requirement} ...", flush=True)
    steps = [
        [base_python(), "-m", "venv", str(home)],
        [str(python), "-m", "pip", "install", "-q", tool.requirement],
    ]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tool.problem = f"{' '.join(argv[-2:])} failed: {done.stderr.strip()[-200:]}"
            return
    stamp.write_text(tool.requirement)


def run_driver(tool: Tool, op: str, ids_file: Path, reps: int, workdir: Path) -> None:
    """One driver process of ``tool`` for ``op``; its timings join tool.results[op]."""
    source = DRIVER_HEAD + tool.driver + DRIVER_TAIL
    argv = [tool.python, "-c", source, op, str(ids_file), str(reps), str(workdir)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=workdir)
    # every job its submits made ("made ID" on stderr, as each is made), to cancel at the end
    tool.made += re.findall(r"^made (\d+)$", done.stderr, re.MULTILINE)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        answer = {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    if "error" in answer:
        tool.notes[op] = f"failed: {answer['error']}"
        return
    tool.results.setdefault(op.removesuffix("-me"), []).extend(answer["times"])
    tool.notes[op.removesuffix("-me")] = answer["note"]


def import_cost(tool: Tool, runs: int) -> None:
    """Median wall time of a fresh ``import`` process minus that of ``python -c pass``."""
    bare: list[float] = []
    loaded: list[float] = []
    for _ in range(runs):
        for argv, into in (
            ([tool.python, "-c", "pass"], bare),
            ([tool.python, "-c", tool.import_line], loaded),
        ):
            started = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
            into.append(time.perf_counter() - started)
            if done.returncode != 0:
                tool.notes["import"] = f"failed: {done.stderr.strip()[-200:]}"
                return
    tool.results["import"] = [statistics.median(loaded) - statistics.median(bare)]
    tool.notes["bare"] = f"{statistics.median(bare) * 1e3:.0f} ms"


def submit_held(count: int) -> list[str]:
    ids = []
    for _ in range(count):
        done = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--hold",
                "--output=/dev/null",
                "--job-name=bench-peers",
                "--wrap",
                "true",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        ids.append(done.stdout.strip().split(";")[0])
    return ids


def cell(tool: Tool, op: str, baseline: float | None) -> str:
    if tool.problem:
        return tool.problem
    times = tool.results.get(op)
    if not times:
        return tool.notes.get(op, "not measured")
    value = statistics.median(times)
    text = f"{value * 1e3:.1f} ms"
    if baseline:
        text += f" ({value / baseline:.2f}x)"
    return text


def print_table(tools: Sequence[Tool], me_listing: Tool) -> None:
    raw = tools[0]
    status_base = statistics.median(raw.results["status"]) if raw.results.get("status") else None
    submit_base = statistics.median(raw.results["submit"]) if raw.results.get("submit") else None
    call_base = statistics.median(raw.results["call"]) if raw.results.get("call") else None
    header = ["", *(t.name for t in tools)]
    rows = [
        ["status of the held jobs", *(cell(t, "status", status_base) for t in tools)],
        ["one submit", *(cell(t, "submit", submit_base) for t in tools)],
        ["one call's round trip", *(cell(t, "call", call_base) for t in tools)],
        [
            "import vs `python -c pass`",
            "",
            *(
                (t.problem or f"+{t.results['import'][0] * 1e3:.0f} ms")
                if t.results.get("import")
                else t.notes.get("import", t.problem or "")
                for t in tools[1:]
            ),
        ],
    ]
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    listing = me_listing.results.get("status")
    if listing and status_base:
        value = statistics.median(listing)
        print(
            f"\nraw `squeue --me` (the listing hpcbridge reads from {LISTING_FROM} ids on): "
            f"{value * 1e3:.1f} ms ({value / status_base:.2f}x)"
        )
    print("\nwhat each status answer held:")
    for tool in tools:
        print(f"  {tool.name}: {tool.problem or tool.notes.get('status', '')}")
    print(
        "bare interpreter start: "
        + ", ".join(f"{t.name} {t.notes['bare']}" for t in tools[1:] if "bare" in t.notes)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hpcbridge against raw Slurm and its peers")
    parser.add_argument("--jobs", type=int, default=1000, help="held jobs to poll")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per driver process")
    parser.add_argument("--submit-reps", type=int, default=3, help="timed submits per round")
    parser.add_argument("--call-reps", type=int, default=2, help="timed round trips per round")
    parser.add_argument("--import-runs", type=int, default=15, help="fresh processes per tool")
    args = parser.parse_args()

    raw = Tool("raw CLI", None, "", RAW)
    tools = [raw, Tool("hpcbridge", None, "from hpcbridge import Cluster, JobSpec", HPCBRIDGE)]
    tools += [Tool(name, requirement, line, driver) for name, requirement, line, driver in PEERS]
    for tool in tools[2:]:
        ensure_venv(tool)
    calling = [tool for tool in tools if tool.name in CALLERS]
    for tool in tools:
        if tool not in calling:
            tool.notes["call"] = "runs commands, not Python functions"
    me_listing = Tool("raw squeue --me", None, "", RAW)

    created: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        workdir = Path(folder)
        begin = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 86400))
        with Cluster.from_site("test-slurm") as cluster:
            spec = JobSpec(name="bench-peers", command="true", begin=begin, stdout="/dev/null")
            (workdir / "raw.sh").write_text(cluster.render(spec))
        try:
            print(f"submitting {args.jobs} held jobs ...", flush=True)
            created += submit_held(args.jobs)
            ids_file = workdir / "ids"
            ids_file.write_text("\n".join(created))
            measured = [tool for tool in tools if not tool.problem]
            for round_number in range(args.rounds):
                print(f"round {round_number + 1}/{args.rounds}", flush=True)
                for tool in measured:
                    run_driver(tool, "status", ids_file, args.reps, workdir)
                run_driver(me_listing, "status-me", ids_file, args.reps, workdir)
                for tool in measured:
                    run_driver(tool, "submit", ids_file, args.submit_reps, workdir)
                for tool in measured:
                    if tool in calling:
                        run_driver(tool, "call", ids_file, args.call_reps, workdir)
            print("imports ...", flush=True)
            for tool in measured[1:]:
                import_cost(tool, args.import_runs)
            print_table(tools, me_listing)
        finally:
            for tool in tools:
                created += tool.made
            for start in range(0, len(created), 500):
                subprocess.run(["scancel", *created[start : start + 500]], check=False)
            print(f"\ncancelled the {len(created)} jobs this run made")


if __name__ == "__main__":
    main()
