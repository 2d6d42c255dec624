"""Hardware matching without a scheduler: which partition and GPU type a request by memory and
features gets, what is refused and how, and what the site config allows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcbridge import JobSpec, SiteConfig
from hpcbridge.errors import ConfigError, SpecError
from hpcbridge.policy.hardware import match, place
from hpcbridge.workflows.segments import workflow_from_file

A100: dict[str, Any] = {
    "type": "a100",
    "memory": "80G",
    "features": ["fp64", "tensor_cores"],
    "per_node": 4,
}
V100: dict[str, Any] = {
    "type": "v100",
    "memory": "32G",
    "features": ["fp64"],
    "per_node": 2,
    "cost": 1,
}
T4: dict[str, Any] = {"type": "t4", "memory": "16G", "features": [], "per_node": 8, "cost": 0.5}


def site(**extra: Any) -> SiteConfig:
    """A CPU default partition, a cheap T4 partition and a mixed one with A100s (NVLink as a
    Slurm node feature on some of its nodes) and V100s."""
    data: dict[str, Any] = {
        "name": "matching",
        "scheduler": "slurm",
        "default_partition": "cpu",
        "partitions": {
            "cpu": {"max_walltime": "2-00:00:00"},
            "inference": {"max_walltime": "4:00:00", "catalogue": [T4]},
            "gpu": {
                "max_walltime": "1-00:00:00",
                "max_gpus": 4,
                "catalogue": [
                    {**A100, "cost": 3},
                    {
                        **A100,
                        "features": [*A100["features"], "nvlink"],
                        "cost": 4,
                        "node_features": True,
                    },
                    V100,
                ],
            },
        },
    }
    return SiteConfig.model_validate(data | extra)


def job(gpu: dict[str, Any] | None = None, **fields: Any) -> JobSpec:
    resources = fields.pop("resources", {})
    if gpu is not None:
        resources = {**resources, "gpu": gpu}
    return JobSpec.parse({"name": "j", "command": "true", "resources": resources, **fields})


def chosen(spec: JobSpec, config: SiteConfig | None = None) -> tuple[str | None, str | None, int]:
    placed = place(config or site(), spec)
    return placed.partition, placed.resources.gpu_type, placed.resources.gpus


def test_memory_picks_the_cheapest_type_with_enough_of_it() -> None:
    assert chosen(job({"count": 2, "min_memory": "40G"})) == ("gpu", "a100", 2)
    assert chosen(job({"count": 2, "min_memory": "20G"})) == ("gpu", "v100", 2)
    assert chosen(job({"count": 1})) == ("inference", "t4", 1)


def test_features_pick_the_cheapest_type_that_has_them_all() -> None:
    assert chosen(job({"features": ["fp64"]})) == ("gpu", "v100", 1)
    assert chosen(job({"features": ["fp64", "tensor_cores"]})) == ("gpu", "a100", 1)


def test_node_features_become_the_constraint_only_where_the_site_says_so() -> None:
    nvlink = place(site(), job({"count": 2, "features": ["nvlink", "fp64"]}))
    assert (nvlink.resources.gpu_type, nvlink.constraint) == ("a100", "nvlink&fp64")
    assert nvlink.resources.gpu is None
    plain = place(site(), job({"count": 2, "features": ["tensor_cores"]}))
    assert (plain.resources.gpu_type, plain.constraint) == ("a100", None)
    own = place(site(), job({"features": ["nvlink"]}, constraint="ib"))
    assert own.constraint == "ib&nvlink"
    with pytest.raises(SpecError, match=re.escape("constraint: 'ib|opa' holds an OR")):
        place(site(), job({"features": ["nvlink"]}, constraint="ib|opa"))


def test_count_and_partition_limits_reject_candidates() -> None:
    assert chosen(job({"count": 4, "features": ["fp64"]})) == ("gpu", "a100", 4)
    # t4 has 8 per node, but the inference partition's walltime is 4 hours
    long = job({"count": 6}, resources={"walltime": "10:00:00"})
    with pytest.raises(SpecError) as caught:
        place(site(), long)
    assert str(caught.value) == (
        "resources.gpu: no partition's GPUs meet the whole request (inference t4: "
        "resources.walltime: 10:00:00 exceeds partition inference's limit of 04:00:00; gpu "
        "a100: 4 per node, 6 asked; gpu a100: 4 per node, 6 asked; gpu v100: 2 per node, "
        "6 asked)"
    )


def test_a_named_partition_is_the_only_one_looked_in() -> None:
    assert chosen(job({"count": 1}, partition="gpu")) == ("gpu", "v100", 1)
    with pytest.raises(SpecError, match="partition 'cpu' has no GPU catalogue in site matching"):
        place(site(), job({"count": 1}, partition="cpu"))
    with pytest.raises(SpecError) as caught:
        place(site(), job({"min_memory": "40G"}, partition="inference"))
    assert str(caught.value) == (
        "resources.gpu.min_memory: 40G: partition inference has no GPUs with that much memory "
        "(largest: t4 16G in inference)"
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"min_memory": "100G"},
            "resources.gpu.min_memory: 100G: no partition has GPUs with that much memory "
            "(largest: a100 80G in gpu)",
        ),
        (
            {"features": ["fp64", "fp8"]},
            "resources.gpu.features: fp8: no partition has GPUs with it (offered: fp64, nvlink, "
            "tensor_cores)",
        ),
        (
            {"count": 16},
            "resources.gpu.count: 16: no partition has nodes with 16 GPUs (most: 8 t4 in "
            "inference)",
        ),
    ],
)
def test_an_impossible_request_names_the_requirement_no_partition_meets(
    request_: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        place(site(), job(request_))
    assert str(caught.value) == message


def test_ties_go_to_the_default_partition_then_the_configs_order() -> None:
    twin = {"catalogue": [V100]}
    config = site(partitions={"a": twin, "b": twin})
    assert chosen(job({"count": 1}), config)[0] == "a"
    config = site(partitions={"a": twin, "b": twin}, default_partition="b")
    placement = match(config, job({"count": 1}))
    assert placement is not None
    assert [c.partition for c in placement.candidates] == ["b", "a"]


def test_the_explanation_lists_every_candidate_chosen_first() -> None:
    placement = match(site(), job({"count": 2, "min_memory": "40G"}))
    assert placement is not None
    rows = [(c.partition, c.offer.type, c.offer.cost, c.rejected) for c in placement.candidates]
    assert rows == [
        ("gpu", "a100", 3, None),
        ("gpu", "a100", 4, None),
        ("inference", "t4", 0.5, "16G per GPU, 40G asked"),
        ("gpu", "v100", 1, "32G per GPU, 40G asked"),
    ]
    assert placement.as_json()["chosen"] == {"partition": "gpu", "type": "a100"}


def test_cpu_jobs_and_named_types_are_left_as_they_are() -> None:
    cpu = job()
    assert place(site(), cpu) is cpu
    assert match(site(), cpu) is None
    assert site().prepare(cpu).partition == "cpu"  # never a GPU partition unless asked
    named = job(resources={"gpus": 2, "gpu_type": "v100"}, partition="gpu")
    assert place(site(), named) is named
    assert site().prepare(named).resources.gpu_type == "v100"
    with pytest.raises(SpecError, match=r"resources.gpu_type: 'h100' is not in partition gpu"):
        site().prepare(job(resources={"gpus": 1, "gpu_type": "h100"}, partition="gpu"))


def test_an_unmatched_request_is_refused_below_the_policy_layer() -> None:
    with pytest.raises(SpecError, match="match it to a partition and type first"):
        site().prepare(job({"count": 1}))


def test_workflow_files_are_matched_stage_by_stage(tmp_path: Path) -> None:
    stages = [
        {"name": "prep", "command": "true"},
        {"name": "train", "command": "true", "depends_on": "prep", "resources": {"gpu": {}}},
    ]
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    prep, train = workflow_from_file(path, site()).stages
    assert (prep.partition, prep.resources.gpus) == (None, 0)
    assert (train.partition, train.resources.gpu_type, train.resources.gpu) == (
        "inference",
        "t4",
        None,
    )


def test_a_site_without_a_catalogue_says_so() -> None:
    with pytest.raises(SpecError, match="site local has no GPU catalogue"):
        place(SiteConfig.load("local"), job({"count": 1}))


def test_gpu_by_need_and_by_type_exclude_each_other() -> None:
    with pytest.raises(SpecError, match=r"give gpu .* or gpus/gpu_type .*, not both"):
        job({"count": 1}, resources={"gpus": 1})


def test_features_are_words_a_constraint_can_hold() -> None:
    with pytest.raises(SpecError, match=r"resources.gpu.features.0: 'fp64,nvlink' is not a"):
        job({"features": ["fp64,nvlink"]})
    with pytest.raises(SpecError, match=r"constraint: 'ib&&opa' is not node features"):
        job(constraint="ib&&opa")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"scheduler": "pbs", "pbs": {"gpu_type_resource": "gpu_model"}},
            "partitions.gpu.catalogue[1].node_features: features become sbatch --constraint",
        ),
        (
            {"scheduler": "pbs", "partitions": {"q": {"catalogue": [V100]}}},
            "partitions.q.catalogue[0]: a matched type is asked of PBS through the site's GPU "
            "model resource; set pbs.gpu_type_resource",
        ),
        (
            {"partitions": {"q": {"gpu_types": ["v100"], "catalogue": [V100]}}},
            "give gpu_types or a catalogue, not both",
        ),
    ],
)
def test_the_site_config_is_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        site(**change)
