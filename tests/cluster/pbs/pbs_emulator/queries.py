"""Server, queue and node status (qstat -B/-Q, pbsnodes), attribute for attribute as captured.

Static attributes (log_events, license_count, ...) carry the values of the reference server;
counts and assigned resources are computed from the job table.
"""

from __future__ import annotations

from typing import Any

from pbs_emulator import PBS_VERSION, units
from pbs_emulator.scheduler import refresh_usage
from pbs_emulator.state import Node, ServerState
from pbs_emulator.status import Attr

STATE_NAMES = (
    ("T", "Transit"),
    ("Q", "Queued"),
    ("H", "Held"),
    ("W", "Waiting"),
    ("R", "Running"),
    ("E", "Exiting"),
    ("B", "Begun"),
)


def counts(st: ServerState, queue: str | None = None) -> dict[str, int]:
    """Jobs per state letter (top-level jobs only; S counts as running), plus history."""
    out = {letter: 0 for letter, _ in STATE_NAMES}
    out["history"] = 0
    for job in st.jobs.values():
        if job.parent is not None or (queue is not None and job.queue != queue):
            continue
        if job.finished:
            out["history"] += 1
        else:
            out["R" if job.state == "S" else job.state] += 1
    return out


def state_count(tally: dict[str, int]) -> str:
    return " ".join(f"{name}:{tally[letter]}" for letter, name in STATE_NAMES) + " "


def assigned(st: ServerState, queue: str | None = None) -> list[Attr]:
    """resources_assigned.* from running jobs (omitted when nothing is assigned)."""
    mem = ncpus = nodect = 0
    for job in st.jobs.values():
        if job.state not in ("R", "S", "E") or job.is_array or (queue and job.queue != queue):
            continue
        mem += sum(c.count * c.mem_kb for c in job.chunks)
        ncpus += int(job.resource_list.get("ncpus", "0"))
        nodect += int(job.resource_list.get("nodect", "0"))
    out: list[Attr] = []
    if mem:
        out.append(("resources_assigned", "mem", units.format_kb(mem)))
    if ncpus:
        out += [
            ("resources_assigned", "ncpus", str(ncpus)),
            ("resources_assigned", "nodect", str(nodect)),
        ]
    return out


def server_status(st: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    del req
    tally = counts(st)
    total = sum(v for k, v in tally.items() if k != "history") + (
        tally["history"] if st.history else 0
    )
    attrs: list[Attr] = [
        ("server_state", None, "Active"),
        ("server_host", None, st.server),
        ("scheduling", None, "True"),
        ("total_jobs", None, str(total)),
        ("state_count", None, state_count(tally)),
        ("default_queue", None, st.config["default_queue"]),
        ("log_events", None, "511"),
        ("mailer", None, "/bin/true"),
        ("mail_from", None, "adm"),
        ("query_other_jobs", None, "True"),
        ("resources_default", "ncpus", "1"),
        ("default_chunk", "ncpus", "1"),
        *assigned(st),
        ("scheduler_iteration", None, "600"),
        ("resv_enable", None, "True"),
        ("node_fail_requeue", None, str(st.config.get("node_fail_requeue", 310))),
        ("max_array_size", None, str(st.config.get("max_array_size", 10000))),
        ("resend_term_delay", None, "5"),
        ("pbs_license_min", None, "0"),
        ("pbs_license_max", None, "2147483647"),
        ("pbs_license_linger_time", None, "31536000"),
        ("license_count", None, "Avail_Global:1000000 Avail_Local:1000000 Used:0 High_Use:0"),
        ("pbs_version", None, PBS_VERSION),
        ("eligible_time_enable", None, "False"),
    ]
    if st.history:
        attrs.append(("job_history_enable", None, "True"))
    attrs += [
        ("max_concurrent_provision", None, "5"),
        ("clear_topjob_estimates_enable", None, "False"),
        ("max_job_sequence_id", None, "9999999"),
    ]
    return {"name": st.server, "attrs": attrs, "counts": tally, "total": total}


def queue_status(st: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    wanted = req.get("names") or list(st.queues())
    out, unknown = [], []
    for name in wanted:
        queue = st.queues().get(name)
        if queue is None:
            unknown.append(name)
            continue
        tally = counts(st, name)
        total = sum(v for k, v in tally.items() if k != "history")
        attrs: list[Attr] = [
            ("queue_type", None, "Execution"),
            ("total_jobs", None, str(total)),
            ("state_count", None, state_count(tally)),
        ]
        for key in ("resources_max", "resources_min", "resources_default"):
            attrs += [(key, res, str(v)) for res, v in sorted((queue.get(key) or {}).items())]
        attrs += assigned(st, name)
        attrs += [("enabled", None, "True"), ("started", None, "True")]
        out.append(
            {
                "name": name,
                "attrs": attrs,
                "counts": tally,
                "total": total,
                "default": name == st.config["default_queue"],
            }
        )
    return {"queues": out, "unknown": unknown}


def node_status(st: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    refresh_usage(st)
    wanted = req.get("names") or list(st.nodes)
    out, unknown = [], []
    for name in wanted:
        node = st.nodes.get(name)
        if node is None:
            unknown.append(name)
            continue
        out.append(describe_node(st, node))
    return {"nodes": out, "unknown": unknown}


def describe_node(st: ServerState, node: Node) -> dict[str, Any]:
    """A node's pbsnodes attributes (text and JSON forms) and its -aS summary line."""
    slots = sorted(node.cpus_used.items())
    jobs = [f"{job_id}/{cpu}" for cpu, job_id in slots]
    available = {
        "arch": "linux",
        "host": st.server,
        "mem": f"{node.mem_kb}kb",
        "ncpus": str(node.ncpus),
    }
    if node.ngpus:
        available["ngpus"] = str(node.ngpus)
    available["vnode"] = node.name
    assigned_res = {
        "accelerator_memory": "0kb",
        "hbmem": "0kb",
        "mem": f"{node.mem_used}kb",
        "naccelerators": "0",
        "ncpus": str(len(node.cpus_used)),
    }
    if node.ngpus:
        assigned_res["ngpus"] = str(len(node.gpus_used))
    assigned_res["vmem"] = "0kb"
    text: list[Attr] = [
        ("Mom", None, st.server),
        ("ntype", None, "PBS"),
        ("state", None, node.state_text()),
    ]
    text.append(("pcpus", None, str(node.ncpus)))
    if jobs:
        text.append(("jobs", None, ", ".join(jobs)))
    text += [("resources_available", k, v) for k, v in available.items()]
    text += [("resources_assigned", k, v) for k, v in assigned_res.items()]
    text += [
        ("resv_enable", None, "True"),
        ("sharing", None, "default_shared"),
        ("license", None, "l"),
    ]
    text.append(("last_state_change_time", None, units.ctime(node.last_state_change)))
    if node.last_used:
        text.append(("last_used_time", None, units.ctime(node.last_used)))
    document: dict[str, Any] = {
        "Mom": st.server,
        "ntype": "PBS",
        "state": node.state_text(),
        "pcpus": node.ncpus,
    }
    if jobs:
        document["jobs"] = [job for job, _ in (j.rsplit("/", 1) for j in jobs)]
    document["resources_available"] = {
        k: (int(v) if v.isdigit() else v) for k, v in available.items()
    }
    document["resources_assigned"] = {
        k: (int(v) if v.isdigit() else v) for k, v in assigned_res.items() if v not in ("0", "0kb")
    }
    document.update({"resv_enable": "True", "sharing": "default_shared", "license": "l"})
    document["last_state_change_time"] = int(node.last_state_change)
    if node.last_used:
        document["last_used_time"] = int(node.last_used)
    running = {job_id for job_id in node.cpus_used.values()}
    suspended = sum(1 for j in running if st.jobs.get(j) is not None and st.jobs[j].state == "S")
    summary = {
        "state": node.state_text(),
        "njobs": len(running),
        "run": len(running) - suspended,
        "susp": suspended,
        "mem": f"{units.rounded_gb(node.free_mem)}/{units.rounded_gb(node.mem_kb)}",
        "ncpus": f"{len(node.free_cpus)}/{node.ncpus}",
        "nmics": "0/0",
        "ngpus": f"{len(node.free_gpus)}/{node.ngpus}",
        "jobs": ",".join(sorted({j.split(".")[0] for j in running}, key=lambda s: (len(s), s))),
    }
    return {"name": node.name, "attrs": text, "json": document, "summary": summary}
