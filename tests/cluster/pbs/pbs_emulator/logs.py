"""Accounting records and daemon log lines, in PBS's on-disk formats.

Accounting (server_priv/accounting/YYYYMMDD) is what ledger ingest will parse, so its record
shapes follow accounting_log_sample.txt exactly: ``MM/DD/YYYY HH:MM:SS;TYPE;ID;message``, with
the trailing space that Q and S records carry. The server, scheduler and MoM logs exist so that
tracejob can merge them as the real one does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pbs_emulator import units
from pbs_emulator.home import Home
from pbs_emulator.model import Job

LOG_CODES = {"server_logs": "0100", "sched_logs": "0080", "mom_logs": "0008"}
LOG_SOURCES = {"server_logs": "Server@{server}", "sched_logs": "pbs_sched", "mom_logs": "pbs_mom"}


def _append(path: Path, line: str) -> None:
    """One line, one write(2) on an O_APPEND file: concurrent readers never see half."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Logs:
    """Writes the accounting file and the three daemon logs of one home."""

    def __init__(self, home: Home, server: str) -> None:
        self.home = home
        self.server = server

    def account(self, kind: str, job_id: str, message: str, now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        line = f"{units.log_stamp(stamp)};{kind};{job_id};{message}"
        _append(self.home.accounting_dir / units.log_day(stamp), line)

    def log(self, daemon: str, job_id: str, message: str, now: float | None = None) -> None:
        """A ``Job`` event line in server_logs, sched_logs or mom_logs."""
        stamp = time.time() if now is None else now
        source = LOG_SOURCES[daemon].format(server=self.server)
        line = f"{units.log_stamp(stamp)};{LOG_CODES[daemon]};{source};Job;{job_id};{message}"
        _append(self.home.root / daemon / units.log_day(stamp), line)

    def server_log(self, job_id: str, message: str) -> None:
        self.log("server_logs", job_id, message)

    def sched_log(self, job_id: str, message: str) -> None:
        self.log("sched_logs", job_id, message)

    def mom_log(self, job_id: str, message: str) -> None:
        self.log("mom_logs", job_id, message)


def base_fields(job: Job) -> list[str]:
    """user= ... queue= ctime= qtime= etime=: the start of Q, S, E and R records."""
    fields = [f"user={job.owner}", f"group={job.group}"]
    if job.account:
        fields.append(f'account="{job.account}"')
    fields += [
        f"project={job.project}",
        f"jobname={job.name}",
        f"queue={job.queue}",
        f"ctime={job.ctime}",
        f"qtime={job.qtime}",
        f"etime={job.etime or 0}",
    ]
    return fields


def resource_fields(job: Job) -> list[str]:
    return [f"Resource_List.{k}={job.resource_list[k]}" for k in sorted(job.resource_list)]


def queued_record(job: Job, server: str) -> str:
    """Q: written when the job is accepted."""
    fields = base_fields(job)
    depend = job.depend_text(server)
    if depend:
        fields.append(f"depend={depend}")
    if job.is_array:  # after depend (multi-accounting_log_jobs-254-276.txt, 267[].vm)
        fields.append(f"array_indices={job.array_spec}")
    return " ".join(fields + resource_fields(job)) + " "


def start_record(job: Job) -> str:
    """S: written when a run starts (arrays: when the first subjob starts)."""
    fields = [*base_fields(job), f"start={job.stime}"]
    if job.is_array:
        fields.append(f"array_indices={job.array_spec}")
        return " ".join(fields + resource_fields(job)) + " "
    fields += [f"exec_host={job.exec_host}", f"exec_vnode={job.exec_vnode}"]
    fields += resource_fields(job)
    fields += [f"resource_assigned.{k}={v}" for k, v in assigned(job)]
    return " ".join(fields) + " "


def assigned(job: Job) -> list[tuple[str, str]]:
    """resource_assigned.* of an S record: the consumable resources the job holds."""
    mem = sum(a.mem_kb for a in job.allocation)
    ncpus = sum(len(a.cpus) for a in job.allocation)
    ngpus = sum(len(a.gpus) for a in job.allocation)
    out = []
    if mem:
        out.append(("mem", f"{mem}kb"))
    out.append(("ncpus", str(ncpus)))
    if ngpus:
        out.append(("ngpus", str(ngpus)))
    return out


def end_record(job: Job, end: int, exit_status: int) -> str:
    """E (and R, which has the same shape): written when a run ends."""
    fields = [*base_fields(job), f"start={job.stime}"]
    if not job.is_array:
        fields += [f"exec_host={job.exec_host}", f"exec_vnode={job.exec_vnode}"]
    fields += resource_fields(job)
    fields += [f"session={job.session_id or 0}", f"end={end}", f"Exit_status={exit_status}"]
    if not job.is_array:
        fields += [f"resources_used.{k}={v}" for k, v in sorted((job.used or {}).items())]
    fields.append(f"run_count={job.run_count}")
    return " ".join(fields)
