"""Priority levels (QOS and nice), the deadlines that move jobs between them, and which jobs
the scheduler may preempt: each expressed through the scheduler's own knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from hpcbridge.errors import SpecError
from hpcbridge.jobs.fields import Token, Walltime
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.units import format_duration
from hpcbridge.site.base import ConfigModel


class PreemptionOptions(ConfigModel):
    """Which jobs the scheduler may preempt, and where runs that must not be preempted go.

    Slurm preempts by QOS (``PreemptType=preempt/qos``) or by partition
    (``preempt/partition_prio``); ``by`` says which of the two ``preemptible`` and
    ``protected`` name. A job asking for ``protect: true``, or longer than
    ``protect_longer_than``, is given the ``protected`` one; a job left in a preemptible one
    must carry a checkpoint section (or ``preemptible_without_checkpoint: true``), since a
    preemption otherwise throws its work away. The scheduler does the preempting; this only
    decides where jobs are sent.
    """

    by: Literal["qos", "partition"] = "qos"
    preemptible: list[Token] = []
    protected: Token | None = None
    protect_longer_than: Walltime | None = None

    def route(self, spec: JobSpec, asked: JobSpec, site: str) -> JobSpec:
        """``spec`` (defaults applied) sent where these rules want it; ``asked`` is the spec
        as given, to tell a QOS the user chose from one a default or a level chose."""
        field = self.by
        walltime = spec.resources.walltime
        too_long = bool(
            self.protect_longer_than and walltime and walltime > self.protect_longer_than
        )
        if spec.protect or too_long:
            chosen = getattr(asked, field)
            if chosen in self.preemptible:
                limit = format_duration(self.protect_longer_than or 0)
                why = "protect: true" if spec.protect else f"longer than {limit}"
                raise SpecError(
                    f"{field}: {chosen!r} may be preempted on site {site}, but the job is to be "
                    f"protected ({why}); leave {field} out or drop the protection"
                )
            if self.protected is not None:
                return spec.model_copy(update={field: self.protected})
            return spec
        tier = getattr(spec, field)
        unsaved = spec.checkpoint is None and not spec.preemptible_without_checkpoint
        if tier in self.preemptible and unsaved:
            raise SpecError(
                f"{field}: {tier!r} jobs may be preempted on site {site} "
                "(preemption.preemptible) and this one has no checkpoint section, so a "
                "preemption would lose its work: add one, or set "
                "preemptible_without_checkpoint: true"
            )
        return spec


class PriorityLevel(ConfigModel):
    """What one priority level asks of the scheduler: a QOS and/or a nice value on Slurm; on
    PBS the nice value alone, as ``qsub -p``/``qalter -p`` of its negation."""

    qos: Token | None = None
    nice: int | None = Field(None, ge=-10000, le=10000)


class DeadlineStep(ConfigModel):
    """Queued jobs of an account with a deadline rise to ``level`` once the slack (time left
    before the deadline - the predicted run time of the account's unfinished work) falls
    below ``slack_below``."""

    slack_below: Walltime
    level: Token


class PriorityOptions(ConfigModel):
    """The site's priority levels, lowest first (the order written), and who gets which.

    A job's level is the one it asks for, else its account's, else ``default``; a QOS or nice
    the job sets itself wins over its level's. ``deadlines`` (account -> when its work is
    due; the ledger's, set with ``priority deadline``, win) raise an account's queued jobs
    by ``deadline_steps``; without steps, to the highest level below a day of slack.
    """

    levels: dict[Token, PriorityLevel] = {}
    default: Token | None = None
    accounts: dict[Token, Token] = {}
    deadlines: dict[Token, AwareDatetime] = {}
    deadline_steps: list[DeadlineStep] | None = None

    @model_validator(mode="after")
    def _known_levels(self) -> PriorityOptions:
        named = [("priorities.default", self.default)] + [
            (f"priorities.accounts.{account}", level) for account, level in self.accounts.items()
        ]
        named += [
            (f"priorities.deadline_steps[{index}].level", step.level)
            for index, step in enumerate(self.deadline_steps or ())
        ]
        for where, level in named:
            if level is not None and level not in self.levels:
                raise ValueError(f"{where}: {level!r} is not a level ({self._level_names()})")
        if self.deadlines and not self.levels:
            raise ValueError("priorities.deadlines: deadlines raise levels; define levels first")
        return self

    def level(self, name: str, site: str) -> PriorityLevel:
        """The level called ``name``; the error names the levels there are."""
        if name not in self.levels:
            raise SpecError(
                f"priority: {name!r} is not a level of site {site} ({self._level_names()})"
            )
        return self.levels[name]

    def steps(self) -> list[DeadlineStep]:
        """The deadline steps, the default one when the site gives none."""
        if self.deadline_steps is not None:
            return self.deadline_steps
        if not self.levels:
            return []
        # Validated like the config's own steps: a bare number there means minutes.
        return [
            DeadlineStep.model_validate({"slack_below": "24:00:00", "level": [*self.levels][-1]})
        ]

    def level_of(self, qos: str | None, nice: int | None) -> str | None:
        """The level a job's QOS and nice stand for: the one whose knobs all match (a knob a
        level leaves unset matches anything), the most specific first; None if none does."""
        matches = [
            (sum(knob is not None for knob in (level.qos, level.nice)), index, name)
            for index, (name, level) in enumerate(self.levels.items())
            if level.qos in (None, qos) and level.nice in (None, nice)
        ]
        return max(matches)[2] if matches else None

    def _level_names(self) -> str:
        return ", ".join(self.levels) or "it defines none"


class DeadlineOptions(ConfigModel):
    """How a deadline is checked before submission: ``margin`` is the safety margin (a share
    of the time to the deadline that the estimate must leave free); ``on_risk`` says whether
    a job at risk only gets the advice of a higher level or is raised to it."""

    margin: float = Field(0.10, ge=0, lt=1)
    on_risk: Literal["warn", "raise"] = "warn"
