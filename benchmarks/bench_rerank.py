"""A rerank of a 100-scenario campaign, from the call to the recorded moves, against the raw
``scontrol update`` calls it makes, measured in the same run.

    .venv/bin/python benchmarks/bench_rerank.py [--scenarios 100] [--rounds 5] [--ledger URL]

Needs the test cluster (tests/cluster/slurm-up.sh). Each scenario is a one-stage workflow
submitted held (so it stays queued) with a metric file; they are cancelled at the end. A
rerank is what ``hpcbridge priority rerank`` does after start-up: read the campaign's
records (state files), one squeue call, the metric files, one ledger read, one scontrol
call per level, one ledger write. The first round moves every job (none had a level); each
later round draws new scores, so the top and bottom change and a few jobs move. Issue 14
asks for under 1 s. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from timing import timed

from hpcbridge import Cluster
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.rerank import RerankResult
from hpcbridge.workflows.campaign import campaign_records, rerank_campaign
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import StateFileStore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ledger", help="Ledger URL  [default: a new SQLite file]")
    args = parser.parse_args()
    campaign = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as name, Cluster.from_site("test-slurm") as cluster:
        folder = Path(name)
        store = StateFileStore(folder / "workflows")
        jobs = []
        try:
            for index in range(args.scenarios):
                workflow = Workflow.parse(
                    {
                        "name": f"s{index:03d}",
                        "campaign": {
                            "name": campaign,
                            "scenario": f"s{index:03d}",
                            "metrics": folder / f"s{index:03d}.jsonl",
                        },
                        "stages": [
                            {"name": "run", "command": "true", "hold": True, "stdout": "/dev/null"}
                        ],
                    }
                )
                record = submit_workflow(cluster, workflow, store, site="test-slurm")
                jobs.append(record.latest_job("run") or "")
            url = args.ledger or f"sqlite:///{folder / 'ledger.sqlite'}"
            with Ledger.open(url) as ledger:
                return _measure(cluster, store, ledger, campaign, folder=folder, args=args)
        finally:
            subprocess.run(["scancel", *jobs], check=False)


def _measure(
    cluster: Cluster,
    store: StateFileStore,
    ledger: Ledger,
    campaign: str,
    *,
    folder: Path,
    args: argparse.Namespace,
) -> int:
    randomness = random.Random(14)
    results: list[RerankResult] = []

    def one_rerank() -> None:
        records = campaign_records(store, campaign)
        results.append(
            rerank_campaign(cluster, records, ledger, campaign, metric="loss", minimize=True)
        )

    levels = cluster.site.priorities.levels

    def raw_calls(result: RerankResult) -> list[list[str]]:
        """The scontrol updates the rerank made, as a user would type them."""
        groups: dict[str, list[str]] = {}
        for change in result.changes:
            groups.setdefault(change.new_level, []).append(change.job_id)
        return [
            ["scontrol", "update", f"JobId={','.join(ids)}"]
            + [f"QOS={levels[level].qos}"] * (levels[level].qos is not None)
            + [f"Nice={levels[level].nice}"] * (levels[level].nice is not None)
            for level, ids in groups.items()
        ]

    took, raw = [], []
    for _ in range(args.rounds):
        for index in range(args.scenarios):
            line = json.dumps({"loss": randomness.random()}) + "\n"
            (folder / f"s{index:03d}.jsonl").write_text(line)
        took.append(timed(one_rerank))
        argvs = raw_calls(results[-1])  # the same calls again, right after: jobs already there
        raw.append(timed(functools.partial(_run_all, argvs)))
    ms = [round(t * 1000) for t in took]
    raw_ms = [round(t * 1000) for t in raw]
    print(f"{args.scenarios} scenarios, {args.rounds} reranks (the first moves every job)")
    print(f"jobs moved:           {[len(result.changes) for result in results]}")
    print(f"rerank, ms:           {ms}")
    print(f"raw scontrol, ms:     {raw_ms}")
    print(f"ratio:                {[round(a / b, 2) for a, b in zip(took, raw, strict=True)]}")
    print(
        f"median {statistics.median(ms)} ms vs raw {statistics.median(raw_ms)} ms; max {max(ms)} ms"
    )
    return 0 if max(took) < 1.0 else 1


def _run_all(argvs: list[list[str]]) -> None:
    for argv in argvs:
        subprocess.run(argv, check=True)


if __name__ == "__main__":
    sys.exit(main())
