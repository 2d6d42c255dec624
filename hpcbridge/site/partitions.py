"""Partitions (PBS queues) and their limits, checked before submission, and the GPU catalogue
hardware matching chooses from (hpcbridge.policy.hardware)."""

from __future__ import annotations

from pydantic import Field, model_validator

from hpcbridge.errors import SpecError
from hpcbridge.jobs.fields import Feature, MemoryMB, Token, Walltime
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.units import format_duration
from hpcbridge.site.base import ConfigModel


class GpuOffer(ConfigModel):
    """One kind of GPU node in a partition's catalogue, what hardware matching chooses from.

    ``type`` is the scheduler's name for the model: Slurm's gres type (``gpu:TYPE:N``), or on
    PBS the value of the site's ``pbs.gpu_type_resource``. ``memory`` is per GPU; ``cost``
    is relative (per GPU), only compared with the other entries. ``features`` are what jobs
    ask for; with ``node_features`` they are also Slurm node features of these nodes, so the
    features a job asks for become its ``--constraint`` (without it they are only matched:
    naming the type is then what lands the job on such GPUs).
    """

    type: Token
    memory: MemoryMB
    features: list[Feature] = []
    per_node: int = Field(ge=1)
    cost: float = Field(1.0, ge=0)
    node_features: bool = False


class PartitionConfig(ConfigModel):
    """Limits of one partition (Slurm) or queue (PBS), and the GPUs its nodes carry: names
    alone (``gpu_types``), or a ``catalogue`` for hardware matching."""

    max_walltime: Walltime | None = None
    default_walltime: Walltime | None = None
    max_nodes: int | None = Field(None, ge=1)
    max_gpus: int | None = Field(None, ge=0)
    gpu_types: list[Token] = []
    catalogue: list[GpuOffer] = []

    @model_validator(mode="after")
    def _types_in_one_place(self) -> PartitionConfig:
        if self.gpu_types and self.catalogue:
            raise ValueError("give gpu_types or a catalogue, not both: the catalogue names types")
        return self

    @property
    def known_gpu_types(self) -> list[str]:
        """The GPU types a job may name here (none known: any)."""
        return self.gpu_types or list(dict.fromkeys(offer.type for offer in self.catalogue))


def check_limits(spec: JobSpec, partition: PartitionConfig) -> None:
    resources = spec.resources
    where = f"partition {spec.partition}"
    if (
        partition.max_walltime
        and resources.walltime
        and resources.walltime > partition.max_walltime
    ):
        raise SpecError(
            f"resources.walltime: {format_duration(resources.walltime)} exceeds {where}'s "
            f"limit of {format_duration(partition.max_walltime)}"
        )
    if partition.max_nodes and resources.nodes > partition.max_nodes:
        raise SpecError(
            f"resources.nodes: {resources.nodes} exceeds {where}'s limit of {partition.max_nodes}"
        )
    if partition.max_gpus is not None and resources.gpus > partition.max_gpus:
        raise SpecError(
            f"resources.gpus: {resources.gpus} exceeds {where}'s limit of {partition.max_gpus}"
        )
    known = partition.known_gpu_types
    if resources.gpu_type and known and resources.gpu_type not in known:
        raise SpecError(
            f"resources.gpu_type: {resources.gpu_type!r} is not in {where} "
            f"(it has {', '.join(known)})"
        )
