"""The server side of each batch request: status, delete, hold, release, rerun, signal, alter
(submit is in ``submission``), and the dispatch of requests to them.

Requests and answers are plain dicts (JSON on the wire). Per-job operations answer with one
``[job_id, pbs_errno, text]`` per id, so commands can print PBS's per-id messages and exit with
the last error, as the real ones do.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from pbs_emulator import errors, ids, lifecycle, resources, status, units
from pbs_emulator.errors import PbsError
from pbs_emulator.model import HELD, SUSPENDED, Job
from pbs_emulator.mom import SIGNALS
from pbs_emulator.queries import node_status, queue_status, server_status
from pbs_emulator.state import ServerState
from pbs_emulator.submission import check_resources, requestor, submit

Request = dict[str, Any]


def check_owner(st: ServerState, job: Job, req: Request) -> None:
    if req["user"] != job.owner and not st.is_operator(req["user"]):
        raise PbsError(errors.PERM)


# ---- status -------------------------------------------------------------------------------------
def refresh_used(st: ServerState, job: Job, now: float) -> None:
    """resources_used of a running job is measured when someone asks (as MoM updates it)."""
    proc = st.procs.get(job.id)
    if proc is None or job.state not in ("R", "S"):
        return
    walltime = job.walltime_used + (now - proc.running_since if proc.running_since else 0)
    job.used = st.mom.usage(job, walltime)


def statjob(st: ServerState, req: Request) -> dict[str, Any]:
    now = time.time()
    history, subjobs = bool(req.get("history")), bool(req.get("subjobs"))
    out: list[list[Any]] = []
    errs: list[list[Any]] = []
    if not req.get("ids"):
        for job in sorted(st.jobs.values(), key=lambda j: ids.sort_key(j.id)):
            if job.parent is None and (history or not job.finished):
                out += job_entries(st, job, subjobs, now)
        return {"jobs": out, "errors": errs}
    for job_id in req["ids"]:
        record = st.jobs.get(job_id)
        pending = st.pending_subjob(job_id) if record is None else None
        if record is None and pending is None:
            errs.append([job_id, errors.UNKJOBID])
        elif record is not None and record.state == "F" and not history:
            errs.append([job_id, errors.HISTJOBID])
        elif record is not None:
            out += job_entries(st, record, subjobs and record.is_array, now)
        elif pending is not None:
            parent, index = pending
            state = parent.sub_states[str(index)]
            out.append([job_id, status.render_pending_subjob(parent, index, state, st.server)])
    return {"jobs": out, "errors": errs}


def job_entries(st: ServerState, job: Job, subjobs: bool, now: float) -> list[list[Any]]:
    refresh_used(st, job, now)
    entries = [[job.id, status.render(job, st.server, subjob_view=job.parent is not None)]]
    if job.is_array and subjobs:
        for index in job.array_indices:
            sub_id = f"{job.seq}[{index}].{st.server}"
            record = st.jobs.get(sub_id)
            if record is not None:
                refresh_used(st, record, now)
                entries.append([sub_id, status.render(record, st.server, subjob_view=True)])
            else:
                state = job.sub_states[str(index)]
                entries.append([sub_id, status.render_pending_subjob(job, index, state, st.server)])
    return entries


# ---- per-job operations --------------------------------------------------------------------------
def for_each(
    st: ServerState,
    req: Request,
    action: Callable[[Job], None],
    pending_action: Callable[[Job, int], None] | None = None,
) -> dict[str, Any]:
    """Apply `action` to every id; answer ``[id, errno, text]`` per id.

    `pending_action` handles ids of subjobs that have not started (only qdel accepts those).
    """
    results = []
    for job_id in req["ids"]:
        try:
            job = st.jobs.get(job_id)
            pending = st.pending_subjob(job_id) if job is None else None
            if job is not None:
                action(job)
            elif pending is None:
                raise PbsError(errors.UNKJOBID)
            elif pending_action is None:
                raise PbsError(errors.IVALREQ)
            else:
                pending_action(*pending)
            results.append([job_id, 0, ""])
        except PbsError as exc:
            results.append([job_id, exc.code, exc.text])
    st.wants_schedule = True
    return {"results": results}


def delete(st: ServerState, req: Request) -> dict[str, Any]:
    def action(job: Job) -> None:
        check_owner(st, job, req)
        if job.finished and req.get("history"):
            lifecycle.forget(st, job)
            return
        lifecycle.delete(st, job, requestor(req), bool(req.get("force")), time.time())

    def pending_action(parent: Job, index: int) -> None:
        check_owner(st, parent, req)
        lifecycle.delete_pending_subjob(st, parent, index, requestor(req), time.time())

    # Arrays go last: ``qdel 267[].vm 268.vm 269.vm`` wrote the D records of 268 and 269
    # first (multi-accounting_log_jobs-254-276.txt), so 269, waiting on 267[], was deleted
    # by the user rather than by its dependency.
    ordered = sorted(req["ids"], key=lambda job_id: "[]" in job_id)
    return for_each(st, {**req, "ids": ordered}, action, pending_action)


def _check_hold_change(st: ServerState, job: Job, req: Request, types: str) -> None:
    """qhold and qrls alike: the owner's job, not finished; an o hold needs an operator, an s
    hold a manager (multi-hold-types_cases.txt: the operator's ``qhold -h s`` is refused)."""
    check_owner(st, job, req)
    if job.finished:
        raise PbsError(errors.HISTJOBID)
    if "o" in types and not st.is_operator(req["user"]):
        raise PbsError(errors.PERM)
    if "s" in types and not st.is_manager(req["user"]):
        raise PbsError(errors.PERM)


def hold(st: ServerState, req: Request) -> dict[str, Any]:
    types = req.get("types") or "u"

    def action(job: Job) -> None:
        _check_hold_change(st, job, req, types)
        now = time.time()
        job.hold = "".join(sorted(set(job.hold + types.replace("n", ""))))
        st.logs.server_log(job.id, f"Holds {types} set at request of {requestor(req)}")
        if job.id in st.procs:  # MoM is asked to checkpoint the running job (tracejob.txt)
            st.logs.mom_log(job.id, "req_holdjob: Checkpoint initiated.")
        if job.state in ("Q", "W", "H"):
            if job.state != "H":  # a held job keeps its substate (22: still on a dependency)
                job.state, job.substate = "H", HELD
            job.etime = None
            job.comment = f"Job held by {req['user']} on {units.ctime(now)}"
        st.touch(job, now)

    return for_each(st, req, action)


def release(st: ServerState, req: Request) -> dict[str, Any]:
    types = req.get("types") or "u"

    def action(job: Job) -> None:
        _check_hold_change(st, job, req, types)
        now = time.time()
        removable = set(types) - ({"s"} if lifecycle.pending_deps(job) else set())
        job.hold = "".join(c for c in job.hold if c not in removable)
        st.logs.server_log(job.id, f"Holds {types} released at request of {requestor(req)}")
        if job.state == "H":
            lifecycle.set_queued(st, job, now)
        st.touch(job, now)

    return for_each(st, req, action)


def rerun(st: ServerState, req: Request) -> dict[str, Any]:
    def action(job: Job) -> None:
        if job.finished:
            raise PbsError(errors.HISTJOBID)
        if not st.is_operator(req["user"]):  # even with -W force (multi-qrerun_non-operator)
            raise PbsError(errors.PERM)
        rerun_job(st, job, requestor(req), bool(req.get("force")))

    return for_each(st, req, action)


def rerun_job(st: ServerState, job: Job, who: str, force: bool) -> None:
    """qrerun: kill the run and queue the job again (R record, run_count goes up next run)."""
    if job.is_array:
        for index, state in job.sub_states.items():
            record = st.jobs.get(f"{job.seq}[{index}].{st.server}")
            if record is not None and state in ("R", "S"):
                rerun_job(st, record, who, force)
        return
    if job.state not in ("R", "S"):
        raise PbsError(errors.BADSTATE)
    if not job.rerunable and not force:
        raise PbsError(errors.NORERUN)
    now = time.time()
    st.logs.server_log(job.id, f"Job Rerun at request of {who}")
    st.logs.mom_log(job.id, "signal job request received")
    st.logs.mom_log(job.id, "signal job with Rerun")
    if job.id not in st.procs:  # node down: nothing to kill
        lifecycle.requeue(st, job, -11, now)
        return
    job.kill_reason = "rerun"
    job.substate = 60
    lifecycle.kill(st, job, signal.SIGTERM, now)
    st.touch(job, now)


def signal_jobs(st: ServerState, req: Request) -> dict[str, Any]:
    name = str(req.get("signal") or "SIGTERM")

    def action(job: Job) -> None:
        check_owner(st, job, req)
        if job.finished:
            raise PbsError(errors.HISTJOBID)
        if name in ("suspend", "resume"):
            if not st.is_operator(req["user"]):
                raise PbsError(errors.PERM)
            suspend(st, job, name == "suspend")
            return
        signum = parse_signal(name)
        if job.state not in ("R", "S"):
            raise PbsError(errors.BADSTATE)
        st.mom.signal(job, signum)

    return for_each(st, req, action)


def parse_signal(name: str) -> int:
    if name.isdigit():
        return int(name)
    key = name.upper().removeprefix("SIG")
    if key not in SIGNALS:
        raise PbsError(errors.UNKSIG)
    return SIGNALS[key]


def suspend(st: ServerState, job: Job, stop: bool) -> None:
    """qsig -s suspend/resume: SIGSTOP/SIGCONT, state S <-> R, z and r records."""
    now = time.time()
    proc = st.procs.get(job.id)
    if proc is None or job.state != ("R" if stop else "S"):
        raise PbsError(errors.BADSTATE)
    if stop:
        refresh_used(st, job, now)
        if proc.running_since is not None:
            job.walltime_used += now - proc.running_since
        proc.running_since = None
        st.mom.signal(job, signal.SIGSTOP)
        job.state, job.substate = "S", SUSPENDED
        used = " ".join(f"resources_used.{k}={v}" for k, v in sorted((job.used or {}).items()))
        st.logs.account("z", job.id, used, now)
    else:
        proc.running_since = now
        st.mom.signal(job, signal.SIGCONT)
        job.state, job.substate = "R", 42
        st.logs.account("r", job.id, "", now)
    if job.parent is not None and job.parent in st.jobs:
        st.jobs[job.parent].sub_states[str(job.index)] = job.state
    st.touch(job, now)


# ---- alter ---------------------------------------------------------------------------------------
ALTER_WHILE_RUNNING = {
    "name",
    "out_path",
    "err_path",
    "mail_points",
    "mail_users",
    "priority",
    "rerunable",
}


def alter(st: ServerState, req: Request) -> dict[str, Any]:
    changes: dict[str, Any] = req["attrs"]

    def action(job: Job) -> None:
        check_owner(st, job, req)
        if job.finished:
            raise PbsError(errors.HISTJOBID)
        running = job.state in ("R", "S", "E")
        if running:
            if "resources" in changes and not st.is_operator(req["user"]):
                raise PbsError(errors.PERM)
            if set(changes) - ALTER_WHILE_RUNNING - {"resources"}:
                raise PbsError(errors.MODATRRUN)
        apply_alter(st, job, changes, requestor(req))

    return for_each(st, req, action)


def apply_alter(st: ServerState, job: Job, changes: dict[str, Any], who: str) -> None:
    now = time.time()
    record: list[str] = []
    if "name" in changes:
        job.name = changes["name"]
        record.append(f"Job_Name={job.name}")
    simple = {
        "out_path": "Output_Path",
        "err_path": "Error_Path",
        "mail_points": "Mail_Points",
        "mail_users": "Mail_Users",
        "account": "Account_Name",
        "project": "project",
        "priority": "Priority",
        "join": "Join_Path",
    }
    for key, attr in simple.items():
        if key in changes:
            value = changes[key]
            if key in ("out_path", "err_path") and ":" not in value:
                value = f"{job.host}:{value}"
            setattr(job, key, int(value) if key == "priority" else value)
            record.append(f"{attr}={value}")
    if "rerunable" in changes:
        job.rerunable = bool(changes["rerunable"])
        record.append(f"Rerunable={'True' if job.rerunable else 'False'}")
    if "resources" in changes:
        merged = {
            **{k: v for k, v in job.resource_list.items() if k not in ("nodect",)},
            **changes["resources"],
        }
        if "select" not in changes["resources"] and "ncpus" in changes["resources"]:
            merged.pop("select", None)
        check_resources(st, job.queue, merged)
        job.resource_list, job.chunks = resources.build(merged)
        record += [
            f"Resource_List.{k}={job.resource_list[k]}" for k in sorted(changes["resources"])
        ]
    if "exec_time" in changes:
        job.exec_time = changes["exec_time"]
        record.append(f"Execution_Time={job.exec_time}")
        if job.state in ("Q", "W"):
            lifecycle.set_queued(st, job, now)
    st.logs.server_log(job.id, f"Job Modified at request of {who}")
    if job.id in st.procs:  # relayed to MoM, which names the server's address (tracejob.txt)
        user = who.split("@", 1)[0]
        st.logs.mom_log(job.id, f"Job Modified at request of {user}@127.0.0.1:15001")
    st.logs.account("a", job.id, " ".join(record), now)
    st.touch(job, now)
    st.wants_schedule = True


# ---- dispatch ------------------------------------------------------------------------------------
HANDLERS: dict[str, Callable[[ServerState, Request], dict[str, Any]]] = {
    "submit": submit,
    "statjob": statjob,
    "statserver": server_status,
    "statque": queue_status,
    "statnode": node_status,
    "delete": delete,
    "hold": hold,
    "release": release,
    "rerun": rerun,
    "signal": signal_jobs,
    "alter": alter,
}


def handle(st: ServerState, req: Request) -> dict[str, Any]:
    """Answer one request; unexpected failures become a PBS system error, not a crash."""
    handler = HANDLERS.get(str(req.get("op")))
    if handler is None:
        return {"error": [errors.IVALREQ, errors.MESSAGES[errors.IVALREQ]]}
    return handler(st, req)
