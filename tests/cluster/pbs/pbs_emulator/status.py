"""A job as qstat sees it: the ordered list of PBS attributes for each state.

Which attributes appear when is copied from the reference captures, e.g. ``etime`` disappears
while a job is held, ``Checkpoint``/``Hold_Types``/``Submit_arguments`` are absent from subjobs
that have run, and a subjob that has not started yet is shown with its array's attributes.
The order is OpenPBS's job attribute table order (job_attr_def), which is what qstat prints.
"""

from __future__ import annotations

from pbs_emulator import units

TYPE_CHECKING = False  # the commands import this module; keep their start-up light
if TYPE_CHECKING:
    from pbs_emulator.model import Job

Attr = tuple[str, str | None, str]


def escape_value(value: str) -> str:
    """Commas inside a Variable_List value are stored as ``\\,`` (PBS's list syntax)."""
    return value.replace(",", "\\,")


def variable_list(variables: list[tuple[str, str]]) -> str:
    return ",".join(f"{name}={escape_value(value)}" for name, value in variables)


def index_ranges(indices: list[int]) -> str:
    """``1-3,5,7-9``: how array_indices_remaining lists indices ("-" when none)."""
    if not indices:
        return "-"
    parts: list[str] = []
    start = prev = indices[0]
    for index in [*indices[1:], None]:
        if index is not None and index == prev + 1:
            prev = index
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if index is not None:
            start = prev = index
    return ",".join(parts)


def _head(job: Job, state: str, show_used: bool) -> list[Attr]:
    attrs: list[Attr] = [
        ("Job_Name", None, job.name),
        ("Job_Owner", None, f"{job.owner}@{job.host}"),
    ]
    if show_used and job.used:
        attrs += [("resources_used", key, job.used[key]) for key in sorted(job.used)]
    attrs += [("job_state", None, state), ("queue", None, job.queue)]
    return attrs


def render(job: Job, server: str, *, subjob_view: bool = False) -> list[Attr]:
    """The attributes of `job` in qstat order (`subjob_view`: a subjob that has run)."""
    ran = job.state in ("R", "S", "E", "F", "X") and job.run_count > 0
    attrs = _head(job, job.state, ran)
    attrs.append(("server", None, server))
    if job.account:
        attrs.append(("Account_Name", None, job.account))
    if not subjob_view:
        attrs.append(("Checkpoint", None, "u"))
    attrs.append(("ctime", None, units.ctime(job.ctime)))
    depend = job.depend_text(server)
    if depend:
        attrs.append(("depend", None, depend))
    attrs.append(("Error_Path", None, job.err_path))
    if ran and job.exec_host:
        attrs += [("exec_host", None, job.exec_host), ("exec_vnode", None, job.exec_vnode or "")]
    if job.exec_time is not None:
        attrs.append(("Execution_Time", None, units.ctime(job.exec_time)))
    if not subjob_view:
        attrs.append(("Hold_Types", None, job.hold_types()))
    attrs += [
        ("Join_Path", None, job.join),
        ("Keep_Files", None, job.keep),
        ("Mail_Points", None, job.mail_points),
    ]
    if job.mail_users:
        attrs.append(("Mail_Users", None, job.mail_users))
    attrs += [
        ("mtime", None, units.ctime(job.mtime)),
        ("Output_Path", None, job.out_path),
        ("Priority", None, str(job.priority)),
        ("qtime", None, units.ctime(job.qtime)),
        ("Rerunable", None, "True" if job.rerunable else "False"),
    ]
    attrs += [("Resource_List", key, job.resource_list[key]) for key in sorted(job.resource_list)]
    attrs += _run_attrs(job, ran)
    attrs += _tail(job, server, subjob_view)
    return attrs


def _run_attrs(job: Job, ran: bool) -> list[Attr]:
    attrs: list[Attr] = []
    if job.stime is not None and (ran or job.is_array):
        attrs.append(("stime", None, units.ctime(job.stime)))
    if job.obittime is not None:
        attrs.append(("obittime", None, units.ctime(job.obittime)))
    if ran and job.session_id is not None:
        attrs.append(("session_id", None, str(job.session_id)))
    if job.shell:
        attrs.append(("Shell_Path_List", None, job.shell))
    if ran and job.jobdir:
        attrs.append(("jobdir", None, job.jobdir))
    attrs.append(("substate", None, str(job.substate)))
    attrs.append(("Variable_List", None, variable_list(job.variables)))
    if job.comment:
        attrs.append(("comment", None, job.comment))
    if job.etime is not None:
        attrs.append(("etime", None, units.ctime(job.etime)))
    if job.run_count > 0:
        attrs.append(("run_count", None, str(job.run_count)))
    if job.exit_status is not None and job.state in ("B", "E", "F", "X"):
        attrs += [("Stageout_status", None, "1"), ("Exit_status", None, str(job.exit_status))]
    return attrs


def _tail(job: Job, server: str, subjob_view: bool) -> list[Attr]:
    attrs: list[Attr] = []
    if job.submit_args and not subjob_view:
        attrs.append(("Submit_arguments", None, job.submit_args))
    if job.is_array:
        attrs += array_attrs(job)
    if subjob_view and job.parent is not None:
        attrs += [("array_id", None, job.parent), ("array_index", None, str(job.index))]
    if job.history_timestamp is not None and job.state in ("F", "X"):
        attrs.append(("history_timestamp", None, str(job.history_timestamp)))
    attrs += [("project", None, job.project), ("Submit_Host", None, job.host)]
    if job.max_run is not None:  # last of all (multi-array_qstat-f-F-json-t_running.json)
        attrs.append(("max_run_subjobs", None, str(job.max_run)))
    return attrs


def array_attrs(job: Job) -> list[Attr]:
    """array, array_state_count, array_indices_submitted/remaining of an array parent."""
    states = list(job.sub_states.values())
    if job.state == "F":
        counts = {"Queued": 0, "Running": 0, "Exiting": 0, "Expired": 0}
    else:
        counts = {
            "Queued": sum(s in ("Q", "H") for s in states),
            "Running": sum(s in ("R", "S") for s in states),
            "Exiting": sum(s == "E" for s in states),
            "Expired": sum(s == "X" for s in states),
        }
    queued = sorted(int(i) for i, s in job.sub_states.items() if s in ("Q", "H"))
    attrs: list[Attr] = [
        ("array", None, "True"),
        ("array_state_count", None, " ".join(f"{k}:{v}" for k, v in counts.items())),
        ("array_indices_submitted", None, job.array_spec or ""),
        ("array_indices_remaining", None, index_ranges(queued)),
    ]
    return attrs


def render_pending_subjob(parent: Job, index: int, state: str, server: str) -> list[Attr]:
    """A subjob that has not started: PBS shows its array's attributes with its own state,
    up to where the array attributes begin (so without project and Submit_Host)."""
    del index
    out: list[Attr] = []
    own = {"job_state": state, "substate": {"Q": "10", "H": "20"}.get(state, "91")}
    for name, resc, value in render(parent, server):
        if name == "array":
            break
        out.append((name, resc, own.get(name, value)))
    return out
