"""slurmrestd's OpenAPI, version v0.0.38 (Slurm 22.05): pure builders and parsers.

The version lives here only: ``API`` names the paths, and the job description and job
records below follow its schema. Later Slurm releases renamed fields (v0.0.39 nests times
and exit codes), so supporting one means a sibling of this module, chosen by
``SUPPORTED``.

slurmrestd takes no ``#SBATCH`` lines: a script's directives are ignored unless they are
sent as fields of the job description. ``job_description`` therefore reads the directives
the Slurm template rendered and maps each to its field, so the script stays the one
faithful statement of the job. A directive v0.0.38 cannot carry raises ``NotExpressible``
with the reason, and the backend hands that job to ``sbatch`` instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import shlex
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from hpcbridge.backends.slurm.parse import optional, slurm_state
from hpcbridge.errors import SchedulerError
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.jobs.units import memory_megabytes, parse_duration

VERSION = "v0.0.38"
# Slurm releases whose slurmrestd serves this version of the API.
SUPPORTED = ("22.05",)
API = f"/slurm/{VERSION}"

PING = f"{API}/ping"
JOBS = f"{API}/jobs"
SUBMIT = f"{API}/job/submit"


def job_path(job_id: str) -> str:
    """The path that reads (GET), updates (POST) or signals (DELETE) one job."""
    return f"{API}/job/{job_id}"


class NotExpressible(Exception):
    """A script directive has no field in this API version (or slurmrestd rejects it)."""


def _text(field: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {field: value}


def _integer(field: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {field: int(value)}


def _flag(field: str, value: bool) -> Callable[[str], dict[str, Any]]:
    return lambda _: {field: value}


def _megabytes(field: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {field: math.ceil(memory_megabytes(value))}


def _nodes(value: str) -> dict[str, Any]:
    low, _, high = value.partition("-")
    return {"nodes": [int(low), int(high or low)]}


def _minutes(value: str) -> dict[str, Any]:
    """sbatch's --time as whole minutes, rounded up as sbatch rounds them."""
    return {"time_limit": math.ceil(parse_duration(value) / 60)}


def _yes(field: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {field: value.lower() in ("yes", "y", "true", "1")}


def _signal(value: str) -> dict[str, Any]:
    if value.upper().startswith(("B:", "R:")):
        # Slurm 22.05's slurmrestd answers "Invalid SIGNAL specification" to any prefix.
        raise NotExpressible(f"--signal={value}: slurmrestd {VERSION} rejects the B: prefix")
    return {"signal": value}


# sbatch(1) long options, as templates/slurm/job.sh.j2 writes them, to v0.0.38 job fields.
DIRECTIVES: dict[str, Callable[[str], dict[str, Any]]] = {
    "job-name": _text("name"),
    "partition": _text("partition"),
    "account": _text("account"),
    "qos": _text("qos"),
    "comment": _text("comment"),
    "dependency": _text("dependency"),
    "array": _text("array"),
    "constraint": _text("constraints"),
    "reservation": _text("reservation"),
    "gres": _text("gres"),
    "output": _text("standard_output"),
    "error": _text("standard_error"),
    "chdir": _text("current_working_directory"),
    "open-mode": _text("open_mode"),
    "begin": _text("begin_time"),
    "deadline": _text("deadline"),
    "nodes": _nodes,
    "ntasks": _integer("tasks"),
    "cpus-per-task": _integer("cpus_per_task"),
    "nice": _integer("nice"),
    "mem": _megabytes("memory_per_node"),
    "mem-per-cpu": _megabytes("memory_per_cpu"),
    "time": _minutes,
    "signal": _signal,
    "kill-on-invalid-dep": _yes("kill_on_invalid_dependency"),
    "requeue": _flag("requeue", True),
    "no-requeue": _flag("requeue", False),
    "hold": _flag("hold", True),
}


def directives(script: str) -> list[tuple[str, str]]:
    """The ``#SBATCH --option[=value]`` pairs at the top of ``script``, as sbatch reads them:
    up to the first line that is neither blank nor a comment."""
    found = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if not stripped.startswith("#SBATCH"):
            continue
        for word in shlex.split(stripped[len("#SBATCH") :]):
            option, _, value = word.removeprefix("--").partition("=")
            if not word.startswith("--"):
                raise NotExpressible(f"#SBATCH {word}: only long options are mapped")
            found.append((option, value))
    return found


def job_description(script: str, *, environment: Mapping[str, str], cwd: str) -> dict[str, Any]:
    """The body of a submit request: the script and its directives as job fields."""
    job: dict[str, Any] = {"environment": dict(environment), "current_working_directory": cwd}
    for option, value in directives(script):
        convert = DIRECTIVES.get(option)
        if convert is None:
            raise NotExpressible(f"--{option}: no field for it in slurmrestd {VERSION}")
        try:
            job.update(convert(value))
        except ValueError as exc:
            raise NotExpressible(f"--{option}={value}: {exc}") from exc
    return {"script": script, "job": job}


def token_claims(token: str) -> tuple[str, datetime | None]:
    """The Slurm user a JWT from ``scontrol token`` speaks for (its "sun" claim), and when
    it expires ("exp"). slurmrestd 22.05 answers an expired token with HTTP 500 and
    "Unspecified error", so the client must know the expiry itself."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires = claims.get("exp")
        return str(claims["sun"]), _epoch(expires)
    except (IndexError, KeyError, ValueError, binascii.Error) as exc:
        raise SchedulerError(
            "the Slurm JWT is not a token from scontrol token (no user in it)"
        ) from exc


def error_text(payload: Mapping[str, Any]) -> str:
    """slurmrestd's "errors" list as one message, the most specific words first."""
    words: list[str] = []
    for error in payload.get("errors") or []:
        words.extend(str(error[key]) for key in ("description", "error") if error.get(key))
    return "; ".join(dict.fromkeys(words))


def parse_jobs(records: Iterable[Mapping[str, Any]]) -> list[JobInfo]:
    """JobInfo for each record of GET /jobs, named as squeue names them ("12345_17").

    An array's tasks that have not started share one record ("4-10%2"); each is listed on
    its own, as ``squeue --array`` lists them, so every task keeps its own handle.
    """
    infos: list[JobInfo] = []
    for record in records:
        array_id = record.get("array_job_id") or 0
        if array_id and record.get("array_task_id") is None:
            pending = task_indices(record.get("array_task_string") or "")
            infos.extend(_job_info(record, f"{array_id}_{task}", task) for task in pending)
        elif array_id:
            task = record["array_task_id"]
            infos.append(_job_info(record, f"{array_id}_{task}", task))
        else:
            infos.append(_job_info(record, str(record["job_id"]), None))
    return infos


def names_of(record: Mapping[str, Any]) -> set[str]:
    """Every id a record may be asked for by: its job id, its array's, and "array_task"."""
    names = {str(record["job_id"])}
    array_id = record.get("array_job_id")
    if array_id:
        names.add(str(array_id))
        task = record.get("array_task_id")
        tasks = [task] if task is not None else task_indices(record.get("array_task_string", ""))
        names.update(f"{array_id}_{index}" for index in tasks)
    return names


def task_indices(expression: str) -> list[int]:
    """The indices of an array expression as Slurm writes it: "1,3,5-9:2%4"."""
    indices: list[int] = []
    for part in expression.partition("%")[0].split(","):
        if not part:
            continue
        bounds, _, step = part.partition(":")
        low, _, high = bounds.partition("-")
        indices.extend(range(int(low), int(high or low) + 1, int(step or 1)))
    return indices


def _job_info(record: Mapping[str, Any], job_id: str, task: int | None) -> JobInfo:
    state = slurm_state(record["job_state"])
    array_id = record.get("array_job_id") or 0
    status = record.get("exit_code")
    finished = state.is_terminal
    return JobInfo(
        job_id=job_id,
        state=state,
        raw_state=record["job_state"],
        name=record.get("name") or None,
        reason=optional(record.get("state_reason") or ""),
        # A wait(2) status: the exit code in the high byte, a killing signal in the low bits.
        exit_code=status >> 8 if finished and isinstance(status, int) else None,
        exit_signal=status & 0x7F if finished and isinstance(status, int) else None,
        nodes=optional(record.get("nodes") or ""),
        partition=optional(record.get("partition") or ""),
        account=optional(record.get("account") or ""),
        submit_time=_epoch(record.get("submit_time")),
        start_time=_epoch(record.get("start_time")) if state is not JobState.PENDING else None,
        end_time=_epoch(record.get("end_time")) if finished else None,
        array_job_id=str(array_id) if array_id else None,
        array_task_id=task if array_id else None,
    )


def _epoch(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None


def comments(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Job id to comment: finds a submission whose answer was lost, by its token."""
    return {str(record["job_id"]): record.get("comment") or "" for record in records}
