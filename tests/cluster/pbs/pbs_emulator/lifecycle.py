"""How a job moves: start, end, requeue, delete, dependencies, and array bookkeeping.

Each function records what real PBS records at that moment: the accounting record (S, E, R, D,
A), the daemon log lines tracejob shows, the comment qstat shows, and the substate. The
reference captures fix the details, e.g. a deleted queued job gets only a D record, a job whose
dependency can never be satisfied is deleted with an A record and keeps ``Hold_Types = s``.
"""

from __future__ import annotations

import copy
import signal

from pbs_emulator import logs as acct
from pbs_emulator import units
from pbs_emulator.errors import HISTJOBID, PbsError
from pbs_emulator.model import (
    BEGUN,
    DEPNHOLD,
    EXITING,
    FAILED,
    FINISHED,
    HELD,
    JOB_EXEC_KILL_WALLTIME,
    JOB_EXEC_RERUN_MS_FAIL,
    QUEUED,
    RUNNING,
    STAGEOUT,
    TERMINATED,
    WAITING,
    Allocation,
    Job,
)
from pbs_emulator.mom import Proc, exit_status, used_dict
from pbs_emulator.state import ServerState

CONSUMABLE = ("ncpus", "mem", "vmem", "ngpus", "naccelerators", "accelerator_memory", "hbmem")


def exec_strings(allocation: list[Allocation]) -> tuple[str, str]:
    """exec_host (``vm/0*2``) and exec_vnode (``(vm:ncpus=2:mem=65536kb)``) of a placement."""
    hosts, vnodes = [], []
    for alloc in allocation:
        first = alloc.cpus[0] if alloc.cpus else 0
        hosts.append(
            f"{alloc.node}/{first}" + (f"*{len(alloc.cpus)}" if len(alloc.cpus) > 1 else "")
        )
        parts = []
        resources = dict(alloc.resources)
        if "ncpus" not in resources:
            parts.append("ncpus=1")
        for name, value in alloc.resources:
            if name in ("mem", "vmem", "accelerator_memory", "hbmem"):
                parts.append(f"{name}={units.parse_size_kb(value) or 0}kb")
            elif name in CONSUMABLE:
                parts.append(f"{name}={value}")
        vnodes.append(f"({alloc.node}:" + ":".join(parts) + ")")
    return "+".join(hosts), "+".join(vnodes)


def set_queued(st: ServerState, job: Job, now: float) -> None:
    """Back to the queue: H if held, W if its -a time is ahead, else Q (eligible from now)."""
    if job.hold:
        # A job already held keeps its substate: 22 stays 22 after a qhold, and even once its
        # dependency is released while a u hold remains (multi-hold_qstat-f-F-json_*).
        if job.state != "H":
            job.substate = DEPNHOLD if "s" in job.hold and pending_deps(job) else HELD
        job.state = "H"
        job.etime = None
    elif job.exec_time is not None and job.exec_time > now:
        job.state, job.substate = "W", WAITING
    else:
        if job.state != "Q" or job.etime is None:
            job.etime = int(now)
        job.state, job.substate = "Q", QUEUED
    if job.parent is not None and job.parent in st.jobs:
        st.jobs[job.parent].sub_states[str(job.index)] = job.state
    st.touch(job, now)
    st.wants_schedule = True


# ---- running ----------------------------------------------------------------------------------
def start(st: ServerState, job: Job, allocation: list[Allocation], now: float) -> None:
    """Run `job` on `allocation`: the S record, the process, the "Job run at" comment."""
    job.allocation = allocation
    job.exec_host, job.exec_vnode = exec_strings(allocation)
    job.state, job.substate = "R", RUNNING
    job.stime = int(now)
    job.run_count += 1
    job.jobdir = st.job_home()
    job.kill_reason = job.kill_by = None
    job.node_lost_at = None
    job.exit_status = None
    job.walltime_used = 0.0
    job.comment = job.run_comment = f"Job run at {units.short_when(now)} on {job.exec_vnode}"
    job.used = used_dict(job, 0, 0, 0, 0)
    st.logs.sched_log(job.id, "Considering job to run")
    st.logs.server_log(
        job.id, f"Job Run at request of Scheduler@{st.server} on exec_vnode {job.exec_vnode}"
    )
    st.logs.sched_log(job.id, "Job run")
    popen = st.mom.launch(job, st.script_path(job))
    job.session_id = popen.pid
    st.procs[job.id] = Proc(popen, running_since=now)
    st.logs.mom_log(job.id, f"Started, pid = {popen.pid}")
    st.logs.account("S", job.id, acct.start_record(job), now)
    if job.parent is not None:
        parent = st.jobs[job.parent]
        parent.sub_states[str(job.index)] = "R"
        if parent.state == "Q":
            parent.state, parent.substate = "B", BEGUN
            parent.stime = int(now)
            parent.comment = f"Job Array Began at {units.short_when(now)}"
            st.logs.account("S", parent.id, acct.start_record(parent), now)
        st.touch(parent, now)
    st.touch(job, now)
    resolve_dependents(st, job, now)


def instantiate(st: ServerState, parent: Job, index: int) -> Job:
    """The record of subjob `index`, made when it first runs (as PBS does)."""
    job = copy.deepcopy(parent)
    job.id = f"{parent.seq}[{index}].{st.server}"
    job.parent, job.index = parent.id, index
    job.array_spec, job.array_indices, job.max_run = None, [], None
    job.sub_states, job.sub_exit = {}, {}
    job.out_path = parent.out_path.replace("^array_index^", str(index))
    job.err_path = parent.err_path.replace("^array_index^", str(index))
    job.depend, job.hold, job.comment, job.stime = [], "", None, None
    job.state, job.substate, job.run_count = "Q", QUEUED, 0
    st.jobs[job.id] = job
    return job


def walltime_deadline(job: Job, proc: Proc) -> float | None:
    """When the running job reaches its walltime (None: no limit, or not running now)."""
    limit = units.parse_duration(job.resource_list.get("walltime") or "x")
    if limit is None or job.kill_reason is not None or proc.running_since is None:
        return None
    return proc.running_since + limit - job.walltime_used


def check_walltime(st: ServerState, job: Job, proc: Proc, now: float) -> None:
    """Kill a job past its walltime (PBS: SIGTERM, SIGKILL kill_delay later, Exit -29)."""
    deadline = walltime_deadline(job, proc)
    if deadline is not None and now >= deadline:
        limit = units.parse_duration(job.resource_list["walltime"])
        used = job.walltime_used + now - (proc.running_since or now)
        job.kill_reason = "walltime"
        st.logs.mom_log(job.id, f"walltime {int(used)} exceeded limit {limit}")
        kill(st, job, signal.SIGTERM, now)


def kill(st: ServerState, job: Job, signum: int, now: float) -> None:
    """Signal the job's processes to end it (qdel, qrerun, walltime); SIGKILL follows after
    kill_delay if they linger. MoM logs kill_job and its task "terminated" at once, as in
    every tracejob capture of such an end."""
    proc = st.procs.get(job.id)
    if job.state == "S":
        st.mom.signal(job, signal.SIGCONT)
    st.mom.signal(job, signum)
    if proc is not None:
        st.logs.mom_log(job.id, "kill_job")
        st.logs.mom_log(job.id, "task 00000001 terminated")
    if proc is not None and signum != signal.SIGKILL:
        proc.kill_at = now + float(st.config.get("kill_delay", 10))


# MoM's first line when a job's task is gone, by why it was killed (tracejob.txt,
# tracejob_deleted-job.txt: the task killed earlier has "no active process"; after a walltime
# kill, tracejob_walltime-exceeded.txt: MoM kills again and forces the task out).
TASK_GONE = {
    "rerun": ("no active process for task 00000001",),
    "delete": ("no active process for task 00000001",),
    "walltime": ("kill_job", "task 00000001 force exited"),
}


def process_ended(
    st: ServerState, job: Job, wait_status: int, usage: tuple[float, int], now: float
) -> None:
    """The job's top process is gone: requeue it, or record how it ended and exit (state E).

    `usage` is what wait4() reported: (cpu seconds, max RSS in kb)."""
    cput, rss_kb = usage
    proc = st.procs.pop(job.id, None)
    for alloc in job.allocation:
        if alloc.node in st.nodes:
            st.nodes[alloc.node].last_used = now
    walltime = job.walltime_used
    if proc is not None and proc.running_since is not None:
        walltime += now - proc.running_since
    vmem = (job.used or {}).get("vmem", "0kb")
    job.used = used_dict(job, cput, rss_kb, int(vmem[:-2] or 0), walltime)
    for line in (
        *TASK_GONE.get(job.kill_reason, ("task 00000001 terminated",)),
        "Terminated",
        f"task 00000001 cput={units.hms(cput)}",
        "kill_job",
    ):
        st.logs.mom_log(job.id, line)
    st.logs.mom_log(job.id, f"{st.server} cput={units.hms(cput)} mem={rss_kb}kb")
    st.logs.mom_log(job.id, "Obit sent")
    if job.kill_reason == "nodefail":
        return  # the node is gone; node_failed() decides once node_fail_requeue expires
    if job.kill_reason == "rerun":
        st.logs.server_log(
            job.id,
            f"Obit received momhop:{job.run_count} serverhop:{job.run_count} "
            f"state:R substate:{job.substate}",
        )
        for line in ("delete job request received", "kill_job"):  # MoM drops the old run
            st.logs.mom_log(job.id, line)
        discard_output(st, job)
        requeue(st, job, -11, now)
        return
    code = exit_status(wait_status)
    st.mom.stage_out(job)
    end_run(st, job, code, now)


def discard_output(st: ServerState, job: Job) -> None:
    for path in st.mom.spool_files(job):
        path.unlink(missing_ok=True)


def end_run(st: ServerState, job: Job, code: int, now: float) -> None:
    """Record the end of a run (Exit_status, comment) and keep the job in E briefly."""
    if job.kill_reason == "walltime":
        code, suffix = JOB_EXEC_KILL_WALLTIME, " and exceeded resource walltime"
    elif job.kill_reason == "delete":
        suffix = f" and terminated by {job.kill_by}"
    elif job.kill_reason == "nodefail":
        code, suffix = JOB_EXEC_RERUN_MS_FAIL, " and failed"
    else:
        suffix = " and finished" if code == 0 else " and failed"
    job.exit_status = code
    job.obittime = int(now)
    job.state, job.substate = "E", STAGEOUT
    job.comment = (job.run_comment or job.comment or "") + suffix
    resources = " ".join(f"resources_used.{k}={v}" for k, v in sorted((job.used or {}).items()))
    st.logs.server_log(
        job.id,
        f"Obit received momhop:{job.run_count} serverhop:{job.run_count} state:R substate:42",
    )
    st.logs.server_log(job.id, f"Exit_status={code} {resources}")
    if job.kill_reason == "delete":  # the qdel, answered now (tracejob_deleted-job.txt)
        st.logs.server_log(job.id, "delete job request received")
    for line in (
        "copy file request received",
        "Staged 2/2 items out over 0:00:00",
        "delete job request received",
        "kill_job",
    ):
        st.logs.mom_log(job.id, line)
    if job.parent is not None and job.parent in st.jobs:
        st.jobs[job.parent].sub_states[str(job.index)] = "E"
    st.exiting[job.id] = now + float(st.config.get("exiting_seconds", 0.1))
    st.touch(job, now)


def finalize(st: ServerState, job: Job, now: float) -> None:
    """E -> F (X for a subjob of a live array): the E record, dependents, the array."""
    st.exiting.pop(job.id, None)
    if job.kill_reason == "delete":
        job.substate = TERMINATED
    else:
        job.substate = FINISHED if job.exit_status == 0 else FAILED
    job.history_timestamp = int(now)
    job.state = "X" if job.parent is not None else "F"
    if job.run_count > 0 and job.exit_status is not None:
        end = job.obittime or int(now)
        st.logs.account("E", job.id, acct.end_record(job, end, job.exit_status), now)
    st.touch(job, now)
    finished(st, job, now)


def finished(st: ServerState, job: Job, now: float) -> None:
    """Common tail of every way of finishing: dependents, array parent, history."""
    resolve_dependents(st, job, now)
    if job.parent is not None and job.parent in st.jobs:
        parent = st.jobs[job.parent]
        parent.sub_states[str(job.index)] = "X"
        if job.exit_status is not None and job.kill_reason != "delete":
            parent.sub_exit[str(job.index)] = job.exit_status
            # The running array already shows it (multi-array_qstat-f-F-json-t_midrun.json:
            # B with Exit_status 0 once subjobs 1-2 have finished).
            parent.exit_status = array_exit_status(parent)
        st.touch(parent, now)
        check_array_done(st, parent, now)
    elif not st.history:
        forget(st, job)
    st.wants_schedule = True


def forget(st: ServerState, job: Job) -> None:
    """Drop a finished job (no history kept, or qdel -x), with its subjobs and script."""
    for sub in [j for j in st.jobs.values() if j.parent == job.id]:
        st.remove(sub)
    st.remove(job)
    if job.parent is None:
        st.script_path(job).unlink(missing_ok=True)


def check_array_done(st: ServerState, parent: Job, now: float) -> None:
    """Finish an array once every subjob has (Exit_status 0 if all were 0, else 1)."""
    if parent.finished or any(s != "X" for s in parent.sub_states.values()):
        return
    parent.exit_status = array_exit_status(parent)
    parent.state = "F"
    parent.history_timestamp = int(now)
    if parent.stime is None:
        parent.substate = TERMINATED
        parent.exit_status = None
    else:
        parent.substate = TERMINATED if parent.kill_reason == "delete" else FINISHED
        parent.obittime = int(now)
        parent.comment = (parent.comment or "") + (
            " and terminated" if parent.kill_reason == "delete" else " and finished"
        )
        st.logs.account("E", parent.id, acct.end_record(parent, int(now), parent.exit_status), now)
    for sub in st.jobs.values():
        if sub.parent == parent.id and sub.state == "X":
            sub.state = "F"
            st.touch(sub, now)
    st.touch(parent, now)
    resolve_dependents(st, parent, now)
    if not st.history:
        forget(st, parent)


def array_exit_status(parent: Job) -> int:
    """An array's Exit_status: 0 if every subjob that finished exited 0, else 1."""
    return 0 if all(code == 0 for code in parent.sub_exit.values()) else 1


def requeue(st: ServerState, job: Job, code: int, now: float) -> None:
    """Put a run back in the queue (qrerun, node failure): the R record, then Q again."""
    st.logs.account("R", job.id, acct.end_record(job, int(now), code), now)
    st.procs.pop(job.id, None)
    job.obittime = int(now)
    job.exec_host = job.exec_vnode = None
    job.allocation = []
    job.session_id = None
    job.used = None
    job.kill_reason = job.kill_by = None
    job.node_lost_at = None
    job.exit_status = None
    job.state = "Q"
    set_queued(st, job, now)


def node_failed(st: ServerState, job: Job, node: str, now: float) -> None:
    """node_fail_requeue expired (or the node came back): requeue or fail the job."""
    if job.rerunable:
        st.logs.server_log(job.id, f"Job requeued, execution node {node} down")
        requeue(st, job, JOB_EXEC_RERUN_MS_FAIL, now)
    else:
        discard_output(st, job)
        st.procs.pop(job.id, None)
        end_run(st, job, JOB_EXEC_RERUN_MS_FAIL, now)


# ---- deleting ---------------------------------------------------------------------------------
def delete(st: ServerState, job: Job, requestor: str, force: bool, now: float) -> None:
    """qdel: a D record; running jobs are signalled, queued ones finish at once."""
    if job.finished:
        raise PbsError(HISTJOBID)
    if job.state == "E":
        return
    st.logs.server_log(job.id, "delete job request received")
    st.logs.account("D", job.id, f"requestor={requestor}", now)
    job.kill_reason, job.kill_by = "delete", requestor
    if job.is_array:
        delete_array(st, job, requestor, force, now)
        return
    if job.state in ("R", "S"):
        st.logs.server_log(job.id, "Job sent signal TermJob on delete")
        st.logs.server_log(job.id, f"Job to be deleted at request of {requestor}")
        if job.id in st.procs:
            st.logs.mom_log(job.id, "signal job request received")
            st.logs.mom_log(job.id, "signal job with TermJob")
            kill(st, job, signal.SIGKILL if force else signal.SIGTERM, now)
            job.state, job.substate = "E", EXITING
            st.touch(job, now)
        else:  # its node is down: nothing left to signal
            end_run(st, job, 256 + signal.SIGKILL, now)
        return
    st.logs.server_log(job.id, f"Job deleted at request of {requestor}")
    job.comment = f"{job.comment} and terminated" if job.comment else None
    job.state, job.substate = ("X" if job.parent else "F"), TERMINATED
    job.history_timestamp = int(now)
    st.touch(job, now)
    finished(st, job, now)


def delete_array(st: ServerState, parent: Job, requestor: str, force: bool, now: float) -> None:
    for index, state in list(parent.sub_states.items()):
        record = st.jobs.get(f"{parent.seq}[{index}].{st.server}")
        if record is not None and not record.finished:
            record.kill_reason, record.kill_by = "delete", requestor
            delete(st, record, requestor, force, now)
        elif record is None and state != "X":
            parent.sub_states[index] = "X"
    st.touch(parent, now)
    check_array_done(st, parent, now)


def delete_pending_subjob(
    st: ServerState, parent: Job, index: int, requestor: str, now: float
) -> None:
    if parent.sub_states.get(str(index)) == "X":
        raise PbsError(HISTJOBID)
    st.logs.account("D", f"{parent.seq}[{index}].{st.server}", f"requestor={requestor}", now)
    parent.sub_states[str(index)] = "X"
    st.touch(parent, now)
    check_array_done(st, parent, now)
    st.wants_schedule = True


# ---- dependencies -------------------------------------------------------------------------------
AFTER_KINDS = ("after", "afterok", "afternotok", "afterany")


def pending_deps(job: Job) -> bool:
    return any(kind in AFTER_KINDS and ids for kind, ids in job.depend)


def outcome(kind: str, parent: Job) -> str:
    """ "ok", "never" or "pending": where a dependency on `parent` stands."""
    if kind == "after":
        return (
            "ok"
            if parent.run_count > 0 or parent.stime is not None or parent.finished
            else "pending"
        )
    if not parent.finished:
        return "pending"
    if kind == "afterany":
        return "ok"
    succeeded = parent.exit_status == 0
    return "ok" if succeeded == (kind == "afterok") else "never"


def resolve_dependents(st: ServerState, parent: Job, now: float) -> None:
    """Release or delete the jobs that wait on `parent`, now that it started or ended."""
    for child in list(st.jobs.values()):
        if child.finished or not any(
            parent.id in ids for kind, ids in child.depend if kind in AFTER_KINDS
        ):
            continue
        verdict = "ok"
        for kind, ids in child.depend:
            if kind in AFTER_KINDS and parent.id in ids:
                result = outcome(kind, parent)
                if result == "ok":
                    ids.remove(parent.id)
                elif result == "never":
                    verdict = "never"
        child.depend = [(k, i) for k, i in child.depend if i or k not in AFTER_KINDS]
        if verdict == "never":
            dependency_delete(
                st, child, f"Job deleted as result of dependency on job {parent.id}", now
            )
        elif not pending_deps(child) and "s" in child.hold:
            child.hold = child.hold.replace("s", "")
            set_queued(st, child, now)
        st.touch(child, now)


def dependency_delete(st: ServerState, job: Job, message: str, now: float) -> None:
    """The server deletes a job whose dependency can never be met (state F, an A record)."""
    st.logs.account("A", job.id, message, now)
    st.logs.server_log(job.id, message)
    job.state, job.substate = "F", FINISHED
    job.history_timestamp = int(now)
    job.etime = None
    st.touch(job, now)
    finished(st, job, now)


def register_dependencies(st: ServerState, job: Job, now: float) -> None:
    """At submission: check each parent, note before* on it, hold or delete the new job."""
    for kind, parent_ids in job.depend:
        for parent_id in list(parent_ids):
            parent = st.jobs.get(parent_id)
            pending = st.pending_subjob(parent_id)
            if parent is None and pending is None:
                message = (
                    f"Reject reply code=15001, aux=0, type=52, from @{st.server} Unknown Job Id"
                )
                dependency_delete(st, job, message, now)
                return
            if kind.startswith("before"):
                if parent is not None and not parent.finished:
                    add_dependency(parent, "after" + kind[len("before") :], job.id)
                    if parent.state in ("Q", "W", "H"):
                        parent.hold += "" if "s" in parent.hold else "s"
                        set_queued(st, parent, now)
                continue
            result = "pending" if parent is None else outcome(kind, parent)
            if result == "never":
                dependency_delete(
                    st, job, f"Job deleted as result of dependency on job {parent_id}", now
                )
                return
            if result == "ok":
                parent_ids.remove(parent_id)
            elif parent is not None:
                add_dependency(parent, "before" + kind[len("after") :], job.id)
                st.touch(parent, now)
    job.depend = [(k, i) for k, i in job.depend if i]
    if pending_deps(job):
        job.hold += "" if "s" in job.hold else "s"


def add_dependency(job: Job, kind: str, other: str) -> None:
    for existing_kind, existing in job.depend:
        if existing_kind == kind:
            if other not in existing:
                existing.append(other)
            return
    job.depend.append((kind, [other]))
