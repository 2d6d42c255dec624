"""Hardware matching: a job that asks for GPUs by need (``resources.gpu``: count, memory per
GPU, features) is given the cheapest partition and GPU type of the site's catalogue that has
them, as plain ``partition``, ``gpus`` and ``gpu_type`` (and ``constraint`` where the site's
features are Slurm node features). The scheduler then places the job as if the user had named
the type: Slurm through ``--gres=gpu:TYPE:N``, PBS through the site's GPU model resource.

Every (partition, type) pair is a candidate; a candidate is rejected for what its GPUs lack
(memory, features, GPUs per node) or for the partition's limits (walltime, nodes, GPUs, as
site.prepare checks them). Among those left the cheapest wins; on a tie the site's default
partition, then the order the site config lists them. A request nothing meets is refused
naming the requirement no partition meets, so the user knows what to relax.

CPU-only jobs are never routed here: they keep the partition they name, else the site's
default, so they reach a GPU partition only when asked to or when the site makes it the
default.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcbridge.errors import SpecError
from hpcbridge.jobs.sections import GpuRequest
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.units import format_memory
from hpcbridge.site import GpuOffer, PartitionConfig, SiteConfig


@dataclass(frozen=True)
class Candidate:
    """One partition's GPU type, and why it cannot take the job (None: it can)."""

    partition: str
    offer: GpuOffer
    rejected: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where a GPU request goes: every candidate considered, the chosen one first, then the
    others that fit (cheapest first), then the rejected ones."""

    request: GpuRequest
    candidates: list[Candidate]

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    def as_json(self) -> dict[str, object]:
        """The placement as ``render --explain --json`` prints it."""
        return {
            "request": self.request.model_dump(mode="json"),
            "chosen": {"partition": self.chosen.partition, "type": self.chosen.offer.type},
            "candidates": [
                {
                    "partition": candidate.partition,
                    "type": candidate.offer.type,
                    "count": self.request.count,
                    "memory": format_memory(candidate.offer.memory),
                    "features": candidate.offer.features,
                    "cost": candidate.offer.cost,
                    "rejected": candidate.rejected,
                }
                for candidate in self.candidates
            ],
        }


def place(site: SiteConfig, spec: JobSpec) -> JobSpec:
    """``spec`` with its GPU request resolved to a partition and type; a spec that names its
    GPUs by type (or has none) is returned as it is."""
    placement = match(site, spec)
    return spec if placement is None else _placed(spec, placement.request, placement.chosen)


def match(site: SiteConfig, spec: JobSpec) -> Placement | None:
    """Every candidate for ``spec``'s GPU request, the chosen one first; None when the job
    asks for no GPUs by need. Raises SpecError naming what no candidate offers."""
    request = spec.resources.gpu
    if request is None:
        return None
    partitions = _partitions(site, spec)
    candidates = [
        Candidate(name, offer, _shortfall(site, spec, request, name, offer))
        for name, partition in partitions
        for offer in partition.catalogue
    ]
    fitting = [candidate for candidate in candidates if candidate.rejected is None]
    if not fitting:
        raise SpecError(_refusal(site, spec, request, candidates))
    order = [name for name, _ in partitions]
    fitting.sort(
        key=lambda candidate: (
            candidate.offer.cost,
            candidate.partition != site.default_partition,
            order.index(candidate.partition),
        )
    )  # stable: within a partition, the catalogue's order
    rejected = [candidate for candidate in candidates if candidate.rejected is not None]
    return Placement(request, fitting + rejected)


def _partitions(site: SiteConfig, spec: JobSpec) -> list[tuple[str, PartitionConfig]]:
    """The partitions to look in: the one the job names, else every one with a catalogue."""
    if spec.partition is not None:
        partition = site.partitions.get(spec.partition)
        if partition is None or not partition.catalogue:
            raise SpecError(
                f"resources.gpu: partition {spec.partition!r} has no GPU catalogue in site "
                f"{site.name}; name the GPUs with gpus/gpu_type, or leave the partition out"
            )
        return [(spec.partition, partition)]
    found = [(name, part) for name, part in site.partitions.items() if part.catalogue]
    if not found:
        raise SpecError(
            f"resources.gpu: site {site.name} has no GPU catalogue (partitions.NAME.catalogue) "
            "to match against; name the GPUs with gpus/gpu_type"
        )
    return found


def _per_node(site: SiteConfig, spec: JobSpec, count: int) -> int:
    """GPUs each node must hold: Slurm's --gres counts per node, while PBS's select splits the
    job's total over its nodes (backends/pbs/cli.py select_statement)."""
    return -(-count // spec.resources.nodes) if site.scheduler == "pbs" else count


def _shortfall(
    site: SiteConfig, spec: JobSpec, request: GpuRequest, partition: str, offer: GpuOffer
) -> str | None:
    """Why ``offer`` in ``partition`` cannot take the job, or None."""
    if request.min_memory is not None and offer.memory < request.min_memory:
        return f"{format_memory(offer.memory)} per GPU, {format_memory(request.min_memory)} asked"
    missing = [feature for feature in request.features if feature not in offer.features]
    if missing:
        return f"no {', '.join(missing)}"
    need = _per_node(site, spec, request.count)
    if need > offer.per_node:
        return f"{offer.per_node} per node, {need} asked"
    try:  # the partition's own limits, checked as for any job sent there
        site.prepare(_placed(spec, request, Candidate(partition, offer)))
    except SpecError as exc:
        return str(exc)
    return None


def _placed(spec: JobSpec, request: GpuRequest, candidate: Candidate) -> JobSpec:
    """The job sent to ``candidate`` as if it had named it: partition, gpus and gpu_type, and
    the features it asked for as node features where the site says they are such."""
    resources = spec.resources.model_copy(
        update={"gpu": None, "gpus": request.count, "gpu_type": candidate.offer.type}
    )
    constraint = spec.constraint
    if candidate.offer.node_features and request.features:
        if constraint is not None and "|" in constraint:
            raise SpecError(
                f"constraint: {constraint!r} holds an OR, which resources.gpu.features cannot "
                "be added to; ask for the features in one place"
            )
        constraint = "&".join([*([constraint] if constraint else []), *request.features])
    return spec.model_copy(
        update={"partition": candidate.partition, "resources": resources, "constraint": constraint}
    )


def _refusal(
    site: SiteConfig, spec: JobSpec, request: GpuRequest, candidates: list[Candidate]
) -> str:
    """Why no candidate fits: the first requirement that no partition meets on its own, else
    each candidate's reason (the requirements are met, but not together or not within the
    partitions' limits)."""
    nowhere = "no partition has" if spec.partition is None else f"partition {spec.partition} has no"
    if request.min_memory is not None:
        largest = max(candidates, key=lambda candidate: candidate.offer.memory)
        if largest.offer.memory < request.min_memory:
            return (
                f"resources.gpu.min_memory: {format_memory(request.min_memory)}: {nowhere} GPUs "
                f"with that much memory (largest: {largest.offer.type} "
                f"{format_memory(largest.offer.memory)} in {largest.partition})"
            )
    offered = {feature for candidate in candidates for feature in candidate.offer.features}
    missing = [feature for feature in request.features if feature not in offered]
    if missing:
        return (
            f"resources.gpu.features: {', '.join(missing)}: {nowhere} GPUs with "
            f"{'it' if len(missing) == 1 else 'them'} (offered: {', '.join(sorted(offered))})"
        )
    need = _per_node(site, spec, request.count)
    most = max(candidates, key=lambda candidate: candidate.offer.per_node)
    if need > most.offer.per_node:
        return (
            f"resources.gpu.count: {request.count}: {nowhere} nodes with {need} GPUs "
            f"(most: {most.offer.per_node} {most.offer.type} in {most.partition})"
        )
    reasons = "; ".join(
        f"{candidate.partition} {candidate.offer.type}: {candidate.rejected}"
        for candidate in candidates
    )
    return f"resources.gpu: no partition's GPUs meet the whole request ({reasons})"
