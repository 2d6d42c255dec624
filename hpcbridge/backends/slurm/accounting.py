"""Pure parsers of ``sacct`` output for the ledger: each run of a job, numbered, as AttemptRecord.

``sacct --duplicates`` (argv from cli.sacct_window and cli.sacct_history) prints one line per
job record, one record per run of a requeued job, each with its own DBIndex, and after each
record one line per step (batch, extern, 0, 1 ...) with the same DBIndex. Facts about Slurm
22.05 this relies on, seen on the test cluster (tests/cluster):

- Steps carry MaxRSS, job lines do not: a run's max_rss_mb is the largest of its steps'.
  TotalCPU on the job line is already the sum over the steps sacct printed.
- Step lines have the job line's fields; what a step asked for is in its own AllocTRES
  ("cpu=1,gres/gpu:a100=1,gres/gpu=1,mem=500M,node=1" for ``srun --gres=gpu:1``). The numbered
  steps (``srun`` calls: "123.0", "123_4.1") become the run's StepRecords. ``batch`` and
  ``extern`` do not: they span the whole run and repeat its line (the batch step's exit code
  is the job's, its MaxRSS is already folded in), and recording them would triple the rows of
  the ordinary batch job, which has no other step.
- A requeued job's later runs have a Submit equal to the requeue time, which is also the End of
  the run before; DBIndex grows with every run, so it orders the runs of a job.
- A job that never started is printed with Start equal to End, but it has no AllocTRES; its
  start is None here, so wait-time statistics do not count it as having run.
- ReqMem is the job's total requested memory ("1400M" for --mem-per-cpu=700M -c 2). Older sacct
  versions appended "c" (per CPU) or "n" (per node); both are understood.
- Tasks of an array that have not started share one line, "123_[4-9%2]": they are not attempts
  yet and are skipped; each appears under its own index once it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from hpcbridge.backends.slurm.cli import FIELD_SEPARATOR, SACCT_LEDGER_FIELDS, sacct_time
from hpcbridge.backends.slurm.parse import optional, slurm_state, tres_gpus, utc_time
from hpcbridge.errors import SchedulerError
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord, StepRecord
from hpcbridge.jobs.units import is_decimal, memory_megabytes

log = logging.getLogger(__name__)

_WIDTH = len(SACCT_LEDGER_FIELDS)
_SUBMIT = SACCT_LEDGER_FIELDS.index("Submit")
_MAX_RSS = SACCT_LEDGER_FIELDS.index("MaxRSS")


@dataclass(slots=True)
class SacctRun:
    """One job record (one run of a job or array task) with its steps, not yet numbered.

    The job's line is kept as sacct printed it until ``record`` converts it, once the run's
    attempt number is known: it is parsed once, never for runs replaced by a fuller reading of
    the same job, and one string per run costs the garbage collector nothing, unlike a list.
    """

    db_index: int
    job_id: str
    array_index: int
    job_spec: str  # the run's job as ``sacct --jobs`` takes it: "123", "123_4", "123+1"
    line: str
    max_rss_mb: float | None = None
    steps: list[str] | None = None  # the numbered steps' lines, as printed

    @property
    def submitted(self) -> str:
        """Submit as printed (UTC, ISO 8601): such strings sort in time order."""
        return self.line.split(FIELD_SEPARATOR, _SUBMIT + 1)[_SUBMIT]

    def record(self, attempt: int) -> AttemptRecord:
        """The AttemptRecord of this run as attempt number ``attempt``."""
        fields = self.line.split(FIELD_SEPARATOR)
        if len(fields) != _WIDTH:
            raise SchedulerError(f"expected {_WIDTH} fields from sacct: {self.line!r}")
        (
            _job,
            _db_index,
            name,
            user,
            account,
            partition,
            qos,
            submit,
            eligible,
            start,
            end,
            elapsed,
            state,
            exit_code,
            reason,
            node_list,
            node_count,
            cpus,
            tres,
            time_limit,
            req_mem,
            _max_rss,
            total_cpu,
        ) = fields
        code, _, signal = exit_code.partition(":")
        alloc_cpus = _count(cpus)
        nodes = _count(node_count)
        return AttemptRecord(
            job_id=self.job_id,
            attempt=attempt,
            state=slurm_state(state),
            array_index=self.array_index,
            name=name or None,
            user=user or None,
            account=account or None,
            partition=partition or None,
            qos=optional(qos),
            submit=utc_time(submit),
            eligible=utc_time(eligible),
            start=utc_time(start) if tres else None,
            end=utc_time(end),
            elapsed_s=_count(elapsed),
            exit_code=_count(code),
            exit_signal=_count(signal),
            reason=optional(reason),
            node_list=None if node_list == "None assigned" else optional(node_list),
            node_count=nodes,
            alloc_cpus=alloc_cpus,
            alloc_gpus=tres_gpus(tres),
            tres=tres or None,
            req_walltime_s=int(time_limit) * 60 if is_decimal(time_limit) else None,
            req_mem_mb=_requested_memory(req_mem, alloc_cpus, nodes),
            max_rss_mb=self.max_rss_mb,
            cpu_time_s=_cpu_seconds(total_cpu),
            steps=tuple(_step(line) for line in self.steps) if self.steps else (),
        )


def parse_runs(stdout: str) -> list[SacctRun]:
    """The runs in sacct output built with cli.SACCT_LEDGER_FIELDS, each with its steps.

    Only the fields that place a line are split off here; SacctRun.record reads the rest.
    """
    runs: dict[int, SacctRun] = {}
    for line in stdout.split("\n"):
        placing = line.split(FIELD_SEPARATOR, 2)
        if len(placing) < 3 or not is_decimal(placing[1]):
            if not line.strip():
                continue
            raise SchedulerError(f"sacct printed a line without a DBIndex: {line!r}")
        job, db_index = placing[0], int(placing[1])
        if "." in job:  # a step: "123.batch", "123_4.0", "123+1.extern"
            rss = line.rsplit(FIELD_SEPARATOR, _WIDTH - _MAX_RSS)[1]
            run = runs.get(db_index)
            used = _megabytes(rss) if rss and run is not None else None
            if run is not None and used is not None and (run.max_rss_mb or -1.0) < used:
                run.max_rss_mb = used
            if run is not None and is_decimal(job.rpartition(".")[2]):
                if run.steps is None:
                    run.steps = [line]
                else:
                    run.steps.append(line)
            continue
        base, _, task = job.partition("_")
        if task and not is_decimal(task):
            continue  # "123_[4-9%2]": array tasks that have not started
        index = int(task) if task else NOT_AN_ARRAY
        runs[db_index] = SacctRun(db_index, base, index, job, line)
    return list(runs.values())


def number_runs(runs: Iterable[SacctRun]) -> dict[int, int]:
    """DBIndex to attempt number: each job's runs counted from 1 in DBIndex (time) order.

    The numbers are only right when ``runs`` holds every earlier run of each job; see
    ledger.slurm_source for how a window makes sure of that.
    """
    by_job: dict[str, list[int]] = {}
    for run in runs:
        indexes = by_job.get(run.job_spec)
        if indexes is None:
            by_job[run.job_spec] = [run.db_index]
        else:
            indexes.append(run.db_index)
    numbers: dict[int, int] = {}
    for indexes in by_job.values():
        indexes.sort()
        for attempt, db_index in enumerate(indexes, start=1):
            numbers[db_index] = attempt
    return numbers


def runs_from_sacct(stdout: str) -> list[AttemptRecord]:
    """Each run of the jobs in ``sacct --duplicates`` output (cli.sacct_history), numbered."""
    runs = parse_runs(stdout)
    numbers = number_runs(runs)
    return [run.record(numbers[run.db_index]) for run in runs]


def submitted_before(runs: Iterable[SacctRun], moment: datetime) -> list[str]:
    """The job specs of runs submitted before ``moment``, each once, sorted."""
    cut = sacct_time(moment)
    return sorted({run.job_spec for run in runs if run.submitted < cut})


def _step(line: str) -> StepRecord:
    """A numbered step's line (the job line's fields) as a StepRecord."""
    fields = line.split(FIELD_SEPARATOR)
    if len(fields) != _WIDTH:
        raise SchedulerError(f"expected {_WIDTH} fields from sacct: {line!r}")
    (
        job,
        _db_index,
        name,
        _user,
        _account,
        _partition,
        _qos,
        _submit,
        _eligible,
        start,
        end,
        elapsed,
        state,
        exit_code,
        _reason,
        node_list,
        _node_count,
        cpus,
        tres,
        _time_limit,
        _req_mem,
        max_rss,
        total_cpu,
    ) = fields
    code, _, signal = exit_code.partition(":")
    return StepRecord(
        step_id=job.rpartition(".")[2],
        state=slurm_state(state),
        name=name or None,
        start=utc_time(start),
        end=utc_time(end),
        elapsed_s=_count(elapsed),
        exit_code=_count(code),
        exit_signal=_count(signal),
        node_list=None if node_list == "None assigned" else optional(node_list),
        alloc_cpus=_count(cpus),
        alloc_gpus=tres_gpus(tres),
        tres=tres or None,
        max_rss_mb=_megabytes(max_rss) if max_rss else None,
        cpu_time_s=_cpu_seconds(total_cpu),
    )


def _count(text: str) -> int | None:
    return int(text) if is_decimal(text) else None


@lru_cache(maxsize=4096)
def _requested_memory(text: str, cpus: int | None, nodes: int | None) -> int | None:
    """ReqMem in megabytes for the whole job; "c"/"n" suffixes of older sacct multiplied out.

    Cached: a cluster's jobs ask for a few distinct sizes, and the regular expression of
    units.memory_megabytes costs more than the rest of a field.
    """
    if not text or not text[0].isdigit():
        return None
    per = text[-1]
    if per in "cn":
        count = cpus if per == "c" else nodes
        size = _megabytes(text[:-1])
        return int(size * count) if size is not None and count is not None else None
    size = _megabytes(text)
    return None if size is None else int(size)


@lru_cache(maxsize=256)
def _megabytes(text: str) -> float | None:
    """A size in megabytes, or None with one warning per odd spelling (seen: "16?").

    One unreadable size must not stop a sync of thousands of jobs; the field is left empty.
    """
    try:
        return memory_megabytes(text)
    except ValueError:
        log.warning("sacct printed a size hpcbridge cannot read, %r; stored as unknown", text)
        return None


def _cpu_seconds(text: str) -> float | None:
    """TotalCPU: "MM:SS.mmm" under an hour, else "[D-]HH:MM:SS" (sacct(1), elapsed format).

    Not units.parse_duration, which reads requests whose bare numbers are minutes, with
    regular expressions: this fixed output form is split directly, several times faster.
    """
    if len(text) == 9 and text[2] == ":" and text[5] == ".":  # the common "MM:SS.mmm"
        return int(text[:2]) * 60 + float(text[3:])
    if not text:
        return None
    clock, _, fraction = text.partition(".")
    days, _, clock = clock.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    if days:
        seconds += int(days) * 86400
    return seconds + float("0." + fraction) if fraction else float(seconds)
