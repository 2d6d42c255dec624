"""The field types of job and site files: single tokens, job references, hostlists, node
features, durations, memory and shell text, and the strict base of every model built of them.

Values that end up on a scheduler directive line (``#SBATCH --partition=...``) must be single
tokens: schedulers parse those lines with their own, quote-unaware rules, so a space or a quote
there would silently change the job. They are refused here, at the edge, with the field named,
rather than quoted later. Free text (environment values) is quoted by the renderer instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from hpcbridge.jobs.units import format_duration, parse_duration, parse_memory

# Every pattern is ASCII and used with fullmatch: "$" would also match before a final newline,
# and \w alone admits any Unicode letter.
_TOKEN = re.compile(r"[\w.+@=,:%/-]+", re.ASCII)
# An environment variable name, as the shell takes it (also for a sweep file's columns).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What ends a line for bash or for Python's str.splitlines(), and NUL, which bash cannot hold.
LINE_BREAK = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


class StrictModel(BaseModel):
    """Unknown fields are refused (a misspelt one would be silently ignored) and a built
    model is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _single_token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{value!r} must be one word of letters, digits and . _ + @ = , : % / - "
            "(no spaces, quotes or shell characters)"
        )
    return value


Token = Annotated[str, AfterValidator(_single_token)]
# Job references may also hold PBS's array brackets ("10[].server", "10[3].server").
_JOB_REFERENCE = re.compile(r"[\w.+@=,:%/\[\]-]+", re.ASCII)


def _job_reference(value: str) -> str:
    if not _JOB_REFERENCE.fullmatch(value):
        raise ValueError(f"{value!r} is not a job id or job name")
    return value


JobReference = Annotated[str, AfterValidator(_job_reference)]
# Slurm hostlists: "node07", "gpu[01-04,09]", "a,b".
_NODE_LIST = re.compile(r"[\w.,\[\]-]+", re.ASCII)


def _node_list(value: str) -> str:
    if not _NODE_LIST.fullmatch(value):
        raise ValueError(f"{value!r} is not a node name or hostlist such as node[01-04]")
    return value


NodeList = Annotated[str, AfterValidator(_node_list)]
# A hardware feature (fp64, nvlink): a word that can stand as a Slurm node feature too.
_FEATURE = re.compile(r"[\w.-]+", re.ASCII)
# sbatch(1), --constraint: node feature names joined by "&" (AND) or "|" (OR); the bracket,
# count and XOR forms are left out until a job needs them.
_CONSTRAINT = re.compile(rf"{_FEATURE.pattern}([&|]{_FEATURE.pattern})*", re.ASCII)


def _feature(value: str) -> str:
    if not _FEATURE.fullmatch(value):
        raise ValueError(f"{value!r} is not a feature name (letters, digits and . _ -)")
    return value


Feature = Annotated[str, AfterValidator(_feature)]


def _constraint(value: str) -> str:
    if not _CONSTRAINT.fullmatch(value):
        raise ValueError(f"{value!r} is not node features joined by & or |, such as fp64&nvlink")
    return value


Constraint = Annotated[str, AfterValidator(_constraint)]
# Endings a job may be retried after (RetrySpec.on): JobState names.
RetryState = Literal[
    "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "FAILED", "PREEMPTED", "CANCELLED"
]
Walltime = Annotated[
    int, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
MemoryMB = Annotated[
    int, BeforeValidator(parse_memory), PlainSerializer(lambda mb: f"{mb}M", return_type=str)
]


def _runnable(value: str) -> str:
    """Shell text bash can run as written: bash drops NUL bytes from a script, so the job
    would run something other than what was written."""
    if "\x00" in value:
        raise ValueError(f"{value!r} holds a NUL byte, which bash cannot run")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


ShellText = Annotated[str, AfterValidator(_not_blank), AfterValidator(_runnable)]
Runnable = Annotated[str, AfterValidator(_runnable)]
