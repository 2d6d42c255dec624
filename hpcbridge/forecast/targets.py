"""The issue's targets for the forecasts, against what one harness run measured on a trace."""

from __future__ import annotations

from hpcbridge.forecast.scores import Evaluation, Target

GROUP_TARGET, GROUP_STRETCH = 0.75, 0.5
"""The issue's per-group target: median APE at most 0.75x the last-month baseline's."""


def group_wins(result: Evaluation, level: str) -> tuple[int, int, int]:
    """In how many of the level's groups the model's median APE (one month ahead) is below
    last month's, in how many it is the same, and of how many groups."""
    by_group: dict[str | None, dict[str, float]] = {}
    for score in result.groups:
        if score.level == level:
            by_group.setdefault(score.group, {})[score.method] = score.median_ape
    wins = sum(1 for ape in by_group.values() if ape["model"] < ape["last month"])
    ties = sum(1 for ape in by_group.values() if ape["model"] == ape["last month"])
    return wins, ties, len(by_group)


def targets(result: Evaluation) -> list[Target]:
    """The issue's targets, against what this run measured on one trace."""
    usage = {(s.level, s.method, s.horizon): s for s in result.usage}
    runtime = {s.method: s for s in result.runtime}
    found: list[Target] = []
    model, naive = usage.get(("account", "model", 1)), usage.get(("account", "last month", 1))
    if model and naive:
        bound = GROUP_TARGET * naive.median_ape
        found.append(
            Target(
                "per-group median APE (h=1)",
                f"<= {GROUP_TARGET}x last-month's ({bound:.0%}; stretch "
                f"{GROUP_STRETCH}x: {GROUP_STRETCH * naive.median_ape:.0%})",
                f"{model.median_ape:.0%} ({model.median_ape / naive.median_ape:.2f}x)"
                if naive.median_ape > 0
                else f"{model.median_ape:.0%}",
                model.median_ape <= bound,
            )
        )
    machine = usage.get(("machine", "model", 1))
    if machine:
        found.append(
            Target(
                "machine total within +-10% (h=1)",
                ">= 85% of months",
                f"{machine.within_10:.0%} of {machine.count}",
                machine.within_10 >= 0.85,
            )
        )
    job = runtime.get("model")
    if job:
        found.append(
            Target(
                "per-job runtime median APE",
                "<= 25%",
                f"{job.median_ape:.0%}",
                job.median_ape <= 0.25,
            )
        )
    for level in ("account", "machine"):
        score = usage.get((level, "model", 1))
        if score and score.coverage is not None:
            found.append(
                Target(
                    f"80% interval coverage, {level} (h=1)",
                    "75-85%",
                    f"{score.coverage:.0%}",
                    0.75 <= score.coverage <= 0.85,
                )
            )
    return found
