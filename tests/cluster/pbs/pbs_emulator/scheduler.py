"""pbs_sched's part: pick eligible jobs in priority/FIFO order and place them on nodes.

Placement follows the job's select chunks and place statement (pack, scatter, free, excl).
A job that does not fit now gets PBS's comment ``Not Running: Insufficient amount of
resource: ncpus (R: 2 A: 1 T: 2)``; one that could not fit even on empty nodes gets
``Can Never Run: ...`` and stays queued, as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbs_emulator import lifecycle, units
from pbs_emulator.model import Allocation, Job
from pbs_emulator.resources import Chunk
from pbs_emulator.state import Node, ServerState


@dataclass
class Free:
    """What one node can still give while placing one job."""

    node: Node
    cpus: list[int]
    mem: int
    gpus: list[int]
    empty: bool


def refresh_usage(st: ServerState) -> None:
    """Recompute what running jobs hold of every node (cheap: few jobs run at once)."""
    for node in st.nodes.values():
        node.cpus_used, node.mem_used, node.gpus_used = {}, 0, set()
    for job in st.jobs.values():
        if not (job.state in ("R", "S") or job.id in st.procs):
            continue
        for alloc in job.allocation:
            holder = st.nodes.get(alloc.node)
            if holder is None:
                continue
            for cpu in alloc.cpus:
                holder.cpus_used[cpu] = job.id
            holder.mem_used += alloc.mem_kb
            holder.gpus_used.update(alloc.gpus)


def _take(free: Free, chunk: Chunk, exclusive: bool) -> Allocation | None:
    host = chunk.get("host") or chunk.get("vnode")
    if host and host != free.node.name:
        return None
    if exclusive and not free.empty:
        return None
    if len(free.cpus) < chunk.ncpus or free.mem < chunk.mem_kb or len(free.gpus) < chunk.ngpus:
        return None
    cpus, free.cpus = free.cpus[: chunk.ncpus], free.cpus[chunk.ncpus :]
    gpus, free.gpus = free.gpus[: chunk.ngpus], free.gpus[chunk.ngpus :]
    free.mem -= chunk.mem_kb
    if exclusive:
        free.cpus, free.gpus, free.mem = [], [], 0
    free.empty = False
    return Allocation(free.node.name, cpus, chunk.mem_kb, gpus, list(chunk.resources))


def fit(job: Job, nodes: list[Node], empty: bool) -> list[Allocation] | None:
    """Place every chunk copy of `job`, or None. `empty`: as if nothing else were running."""
    place = job.resource_list.get("place", "pack").split(":")
    exclusive = "excl" in place or "exclhost" in place
    copies = [chunk for chunk in job.chunks for _ in range(chunk.count)]

    def pool() -> list[Free]:
        return [
            Free(
                n,
                list(range(n.ncpus)) if empty else n.free_cpus,
                n.mem_kb if empty else n.free_mem,
                list(range(n.ngpus)) if empty else n.free_gpus,
                empty or not n.cpus_used,
            )
            for n in nodes
        ]

    if "pack" in place:
        for free in pool():
            taken = [_take(free, chunk, exclusive) for chunk in copies]
            if all(taken):
                return [t for t in taken if t is not None]
        return None
    frees = pool()
    allocation: list[Allocation] = []
    used: set[str] = set()
    for chunk in copies:
        for free in frees:
            if ("scatter" in place or "vscatter" in place) and free.node.name in used:
                continue
            got = _take(free, chunk, exclusive)
            if got is not None:
                allocation.append(got)
                used.add(free.node.name)
                break
        else:
            return None
    return allocation


def why_not(job: Job, st: ServerState, never: bool) -> str:
    """PBS's scheduler comment for a job that does not fit."""
    usable = [n for n in st.nodes.values() if n.usable]
    request = {
        "ncpus": sum(c.count * c.ncpus for c in job.chunks),
        "mem": sum(c.count * c.mem_kb for c in job.chunks),
        "ngpus": sum(c.count * c.ngpus for c in job.chunks),
    }
    available = {
        "ncpus": sum(len(n.free_cpus) for n in usable),
        "mem": sum(n.free_mem for n in usable),
        "ngpus": sum(len(n.free_gpus) for n in usable),
    }
    total = {
        "ncpus": sum(n.ncpus for n in st.nodes.values()),
        "mem": sum(n.mem_kb for n in st.nodes.values()),
        "ngpus": sum(n.ngpus for n in st.nodes.values()),
    }
    prefix = "Can Never Run" if never else "Not Running"
    if not never and not any(n.free_cpus for n in usable):
        # Every node is job-busy, so none is even considered (multi-noid_qstat_cases.txt:
        # a 1-cpu job while both cpus run; with one cpu free it is "Insufficient amount").
        return f"{prefix}: Not enough free nodes available"
    limit = total if never else available
    for name in ("ncpus", "mem", "ngpus"):
        if request[name] > limit[name]:
            show = units.format_kb if name == "mem" else str
            amounts = f"R: {show(request[name])} A: {show(available[name])} T: {show(total[name])}"
            return f"{prefix}: Insufficient amount of resource: {name} ({amounts})"
    return f"{prefix}: Not enough free nodes available"


def set_comment(st: ServerState, job: Job, comment: str) -> None:
    if job.comment != comment:
        job.comment = comment
        st.touch(job)


def promote_waiting(st: ServerState, now: float) -> None:
    """W jobs whose -a time has come become eligible (Q, or H if held meanwhile)."""
    for job in list(st.jobs.values()):
        if job.state == "W" and (job.exec_time or 0) <= now:
            job.state = "Q"
            job.etime = None
            lifecycle.set_queued(st, job, now)


def running_subjobs(st: ServerState, parent: Job) -> int:
    return sum(state in ("R", "S", "E") for state in parent.sub_states.values())


def candidates(st: ServerState) -> list[tuple[Job, int | None]]:
    """Eligible work in scheduling order: (job, None) or (array, index to start)."""
    out: list[tuple[Job, int | None]] = []
    for job in st.jobs.values():
        if job.state == "Q" and not job.is_array:
            out.append((job, None))
        elif job.is_array and job.state in ("Q", "B"):
            for index in job.array_indices:
                if (
                    job.sub_states.get(str(index)) == "Q"
                    and f"{job.seq}[{index}].{st.server}" not in st.jobs
                ):
                    out.append((job, index))
    out.sort(key=lambda item: (-item[0].priority, item[0].seq, item[1] or 0))
    return out


def schedule(st: ServerState, now: float) -> None:
    """One scheduling cycle."""
    st.wants_schedule = False
    promote_waiting(st, now)
    refresh_usage(st)
    usable = [n for n in st.nodes.values() if n.usable]
    all_nodes = list(st.nodes.values())
    free_cpus = sum(len(n.free_cpus) for n in usable)
    for job, index in candidates(st):
        parent = st.jobs.get(job.parent) if job.parent else (job if index is not None else None)
        if parent is not None and parent.is_array:
            if parent.state not in ("Q", "B") or parent.hold:
                continue
            if parent.max_run is not None and running_subjobs(st, parent) >= parent.max_run:
                continue
        need = sum(c.count * c.ncpus for c in job.chunks)
        allocation = fit(job, usable, empty=False) if need <= free_cpus else None
        if allocation is None:
            never = fit(job, all_nodes, empty=True) is None
            if index is None or not job.comment or not job.comment.startswith("Job Array"):
                set_comment(st, job, why_not(job, st, never))
            continue
        target = lifecycle.instantiate(st, job, index) if index is not None else job
        lifecycle.start(st, target, allocation, now)
        refresh_usage(st)
        free_cpus = sum(len(n.free_cpus) for n in usable)
