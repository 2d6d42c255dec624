"""The submit request on the server side: the checks real pbs_server makes (root, queue,
resources, queue limits), the job record, its accounting Q record, its dependencies.

A submission the server refuses still uses up a job id, as the reference shows (ids 11, 12
and 15 there went to rejected submissions).
"""

from __future__ import annotations

import time
from typing import Any

from pbs_emulator import errors, ids, lifecycle, resources, units
from pbs_emulator import logs as acct
from pbs_emulator.errors import PbsError
from pbs_emulator.model import Job
from pbs_emulator.state import ServerState

Request = dict[str, Any]


def requestor(req: Request) -> str:
    return f"{req['user']}@{req['host']}"


def submit(st: ServerState, req: Request) -> dict[str, Any]:
    now = time.time()
    seq = st.take_seq()
    try:
        job = new_job(st, req, seq, now)
    except PbsError as exc:
        return {"error": [exc.code, exc.text]}
    st.jobs[job.id] = job
    st.script_path(job).write_text(req["script"])
    st.logs.server_log(job.id, f"enqueuing into {job.queue}, state Q hop 1")
    st.logs.server_log(
        job.id,
        f"Job Queued at request of {requestor(req)}, owner = {job.owner}@{job.host}, "
        f"job name = {job.name}, queue = {job.queue}",
    )
    if lifecycle.pending_deps(job):
        job.hold += "s"
    lifecycle.set_queued(st, job, now)
    st.logs.account("Q", job.id, acct.queued_record(job, st.server), now)
    if job.depend:
        lifecycle.register_dependencies(st, job, now)
        if not job.finished:
            if not lifecycle.pending_deps(job):
                job.hold = job.hold.replace("s", "")
            lifecycle.set_queued(st, job, now)
    return {"id": job.id}


def new_job(st: ServerState, req: Request, seq: int, now: float) -> Job:
    """Server-side checks of a submission, then the job record (not yet queued)."""
    user = req["user"]
    if user == "root" and "root" not in (st.config.get("acl_roots") or []):
        raise PbsError(errors.BADUSER)
    attrs = req["attrs"]
    queue = attrs.get("queue") or st.config["default_queue"]
    if queue not in st.queues():
        raise PbsError(errors.UNKQUE)
    requested = dict(attrs.get("resources") or {})
    check_resources(st, queue, requested)
    resource_list, chunks = resources.build(requested)
    array = attrs.get("array")
    job_id = ids.full_id(seq, st.server, "" if array else None)
    workdir = req["cwd"]
    name = attrs.get("name") or "STDIN"
    suffix = ".^array_index^" if array else ""

    def path(kind: str, given: str | None) -> str:
        if given:
            return given if ":" in given else f"{req['host']}:{given}"
        return f"{req['host']}:{workdir}/{name}.{kind}{seq}{suffix}"

    job = Job(
        id=job_id,
        seq=seq,
        name=name,
        owner=user,
        group=str(req.get("group") or user),
        host=req["host"],
        queue=queue,
        state="Q",
        substate=10,
        ctime=int(now),
        mtime=int(now),
        qtime=int(now),
        resource_list=resource_list,
        chunks=chunks,
        variables=[
            *map(tuple, attrs.get("variables", [])),
            ("PBS_O_QUEUE", queue),
            ("PBS_O_HOST", req["host"]),
        ],
        workdir=workdir,
        out_path=path("o", attrs.get("out_path")),
        err_path=path("e", attrs.get("err_path")),
        exec_time=attrs.get("exec_time"),
        hold="u" if attrs.get("hold") else "",
        depend=[
            (kind, [st.full_id(i) or i for i in job_ids])
            for kind, job_ids in attrs.get("depend", [])
        ],
        join=attrs.get("join", "n"),
        keep=attrs.get("keep", "n"),
        mail_points=attrs.get("mail_points", "a"),
        mail_users=attrs.get("mail_users"),
        account=attrs.get("account"),
        project=attrs.get("project") or "_pbs_project_default",
        priority=int(attrs.get("priority", 0)),
        rerunable=attrs.get("rerunable", True),
        shell=attrs.get("shell"),
        submit_args=attrs.get("submit_args") or None,
    )
    if array:
        first, last, step, limit = array
        job.array_indices = list(range(first, last + 1, step))
        if len(job.array_indices) > int(st.config.get("max_array_size", 10000)):
            raise PbsError(errors.MAXARRAY)
        job.array_spec = f"{first}-{last}" + (f":{step}" if step != 1 else "")
        job.max_run = limit
        job.sub_states = {str(i): "Q" for i in job.array_indices}
    return job


def check_resources(st: ServerState, queue: str, requested: dict[str, str]) -> None:
    """Unknown resources and queue limits are the server's to refuse (after the id is used)."""
    custom = set(st.config.get("custom_resources") or [])
    for name, value in requested.items():
        if name not in resources.KNOWN and name not in custom:
            raise PbsError(errors.UNKRESC, f"Resource_List.{name}")
        if name == "select":
            chunks = resources.parse_select(value)
            for chunk in chunks if not isinstance(chunks, str) else []:
                for res, _ in chunk.resources:
                    if res not in resources.KNOWN and res not in custom:
                        raise PbsError(errors.UNKRESC, f"select.{res}")
    limits = st.queues()[queue].get("resources_max") or {}
    built, _ = resources.build(requested)
    for name, limit in limits.items():
        if name not in built:
            continue
        if name in resources.DURATIONS:
            over = (units.parse_duration(built[name]) or 0) > (
                units.parse_duration(str(limit)) or 0
            )
        elif name in resources.SIZES:
            over = (units.parse_size_kb(built[name]) or 0) > (units.parse_size_kb(str(limit)) or 0)
        else:
            over = int(built[name]) > int(limit)
        if over:
            raise PbsError(errors.EXCQRESC)
