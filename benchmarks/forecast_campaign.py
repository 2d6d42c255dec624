"""How good are campaign forecasts? Each month of a trace, taken as a campaign planned at its start.

    python benchmarks/forecast_campaign.py [TRACE ...] [--json]

For every whole month after the harness's warm-up, the jobs submitted that month that ran
(for more than 0 s: a job cancelled in the queue is a run of no length) and asked for a
walltime are the plan, as ``hpcbridge forecast workflow`` would get it: one
stage per user, request and processor count, ``count`` jobs each (SWF has no job names).
It is forecast from the runs that ended before the month began (the replay of
hpcbridge.forecast.campaign, fed in submit order), and compared with the core-hours those
jobs used (failed ones too). Reported per trace: the median absolute percentage error of the
total, its bias (median of forecast / actual), how often the 80% interval held the total and
each stage's core-hours, and how much the sum of the predictor's medians alone missed by.
Without a TRACE: the three development traces of benchmarks/forecast_eval.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from forecast_eval import DEFAULTS

from hpcbridge.forecast.arrays import np
from hpcbridge.forecast.campaign import PastRun, PlannedJob, ReplayedHistory, forecast_plan
from hpcbridge.forecast.evaluate import WARMUP, TraceJobs, month_bounds, read_trace
from hpcbridge.forecast.runtime import FinishedJob

_HOUR = 3600.0


def score_trace(jobs: TraceJobs) -> dict[str, Any]:
    """Forecast every month after the warm-up as a campaign; the errors and coverages."""
    bounds = month_bounds(jobs).tolist()
    ran = ~np.isnan(jobs.start) & ~np.isnan(jobs.end) & ~np.isnan(jobs.submit)
    order = np.flatnonzero(ran)[np.argsort(jobs.submit[ran], kind="stable")].tolist()
    history = ReplayedHistory()
    months: list[dict[str, Any]] = []
    stage_hits: list[bool] = []
    position = 0
    for month in range(WARMUP, len(bounds) - 1):
        begin, end = bounds[month], bounds[month + 1]
        while position < len(order) and jobs.submit[order[position]] < begin:
            history.submitted(_run(jobs, order[position]))
            position += 1
        history.advance(begin)
        groups: dict[tuple[str | None, int, int], list[float]] = defaultdict(list)
        first = position
        while position < len(order) and jobs.submit[order[position]] < end:
            index = order[position]
            request, cpus = jobs.request[index], jobs.cpus[index]
            ran_for = jobs.end[index] - jobs.start[index]
            if not np.isnan(request) and cpus > 0 and ran_for > 0:
                key = (jobs.users[jobs.user[index]], int(request), int(cpus))
                groups[key].append(float(ran_for))
            position += 1
        plan = [
            PlannedJob(f"{user}/{request}/{cpus}", user, None, request, cpus, count=len(runs))
            for (user, request, cpus), runs in groups.items()
        ]
        result = forecast_plan(plan, history, as_of=datetime.fromtimestamp(begin, UTC))
        actual_by_stage = [cpus * sum(runs) / _HOUR for (_, _, cpus), runs in groups.items()]
        total = sum(actual_by_stage)
        medians_total = sum(s.count * s.cpus * s.predicted_s / _HOUR for s in result.stages)
        stage_hits += [
            s.core_low <= real <= s.core_high
            for s, real in zip(result.stages, actual_by_stage, strict=True)
        ]
        months.append(
            {
                "month": f"{datetime.fromtimestamp(begin, UTC):%Y-%m}",
                "jobs": sum(len(runs) for runs in groups.values()),
                "stages": len(plan),
                "actual": total,
                "forecast": result.core_hours,
                "low": result.core_low,
                "high": result.core_high,
                "medians": medians_total,
                "unsimulated": len(result.unsimulated),
            }
        )
        # the month's jobs go into the replay only after it was forecast
        for index in order[first:position]:
            history.submitted(_run(jobs, index))
    actual = np.array([m["actual"] for m in months])
    forecast = np.array([m["forecast"] for m in months])
    medians = np.array([m["medians"] for m in months])
    low, high = np.array([m["low"] for m in months]), np.array([m["high"] for m in months])
    return {
        "months": len(months),
        "median_ape": float(np.median(np.abs(forecast - actual) / actual)),
        "bias": float(np.median(forecast / actual)),
        "medians_ape": float(np.median(np.abs(medians - actual) / actual)),
        "medians_bias": float(np.median(medians / actual)),
        "coverage": float(np.mean((low <= actual) & (actual <= high))),
        "below": float(np.mean(actual < low)),
        "above": float(np.mean(actual > high)),
        "median_width": float(np.median((high - low) / forecast)),
        "stage_coverage": float(np.mean(stage_hits)),
        "stages": len(stage_hits),
        "per_month": months,
    }


def _run(jobs: TraceJobs, index: int) -> PastRun:
    request = jobs.request[index]
    cpus = jobs.cpus[index]
    return PastRun(
        float(jobs.submit[index]),
        float(jobs.end[index]),
        FinishedJob(
            jobs.users[jobs.user[index]],
            None,
            None if np.isnan(request) else int(request),
            int(jobs.end[index] - jobs.start[index]),
            int(cpus) if cpus > 0 else None,
        ),
        bool(jobs.finished[index]),
    )


def main(arguments: list[str]) -> None:
    as_json = "--json" in arguments
    paths = [a for a in arguments if not a.startswith("-")] or [str(p) for p in DEFAULTS]
    results = {}
    for path in paths:
        started = time.perf_counter()
        result = score_trace(read_trace(path))
        result["seconds"] = time.perf_counter() - started
        results[path] = result
        if not as_json:
            print(
                f"{path.rsplit('/', 1)[-1]}: {result['months']} monthly campaigns, total "
                f"median APE {result['median_ape']:.1%} (forecast/actual {result['bias']:.2f}; "
                f"sum of medians alone {result['medians_ape']:.1%}, "
                f"{result['medians_bias']:.2f}), 80% interval covers {result['coverage']:.0%} "
                f"(below {result['below']:.0%}, above {result['above']:.0%}, median width "
                f"{result['median_width']:.0%} of the point); per stage covers "
                f"{result['stage_coverage']:.0%} of {result['stages']}; {result['seconds']:.1f} s"
            )
    if as_json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
