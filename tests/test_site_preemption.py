"""Preemption protection: where SiteConfig.prepare sends jobs, and what it refuses. The
preemption itself is Slurm's, tested on the real cluster (tests/jobs/test_checkpoint_slurm.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hpcbridge import ConfigError, SiteConfig, SpecError
from hpcbridge.jobs.spec import JobSpec

CHECKPOINT = {"command": "true", "directory": "ck"}


def slurm_site(**preemption: Any) -> SiteConfig:
    site = SiteConfig.load("test-slurm")
    options = {"preemptible": ["scavenger"], "protected": "long", **preemption}
    return SiteConfig.model_validate({**site.model_dump(), "preemption": options})


def prepared(site: SiteConfig, **fields: Any) -> JobSpec:
    return site.prepare(JobSpec.parse({"name": "j", "command": "true", **fields}))


def test_a_protected_job_goes_to_the_protected_qos() -> None:
    assert prepared(slurm_site(), protect=True).qos == "long"
    assert prepared(slurm_site()).qos is None  # the cluster's default QOS


def test_a_job_longer_than_the_threshold_is_protected_too() -> None:
    site = slurm_site(protect_longer_than="0:30:00")
    assert prepared(site, resources={"walltime": "0:45:00"}).qos == "long"
    assert prepared(site, resources={"walltime": "0:30:00"}).qos is None


def test_a_preemptible_qos_chosen_for_a_protected_job_is_refused_by_name() -> None:
    with pytest.raises(SpecError, match=r"qos: 'scavenger' may be preempted on site test-slurm"):
        prepared(slurm_site(), qos="scavenger", protect=True, checkpoint=CHECKPOINT)
    site = slurm_site(protect_longer_than="0:30:00")
    with pytest.raises(SpecError, match=r"to be protected \(longer than 00:30:00\)"):
        prepared(site, qos="scavenger", checkpoint=CHECKPOINT, resources={"walltime": "1:00:00"})


def test_a_level_that_makes_a_job_preemptible_yields_to_its_protection() -> None:
    site = slurm_site()
    levels = {**site.priorities.model_dump()["levels"], "spare": {"qos": "scavenger"}}
    site = SiteConfig.model_validate(
        {**site.model_dump(), "priorities": {**site.priorities.model_dump(), "levels": levels}}
    )
    assert prepared(site, priority="spare", protect=True).qos == "long"
    assert prepared(site, priority="spare", checkpoint=CHECKPOINT).qos == "scavenger"


def test_a_preemptible_job_without_a_checkpoint_is_refused_unless_it_accepts_the_loss() -> None:
    site = slurm_site()
    with pytest.raises(SpecError, match="has no checkpoint section, so a preemption would lose"):
        prepared(site, qos="scavenger")
    assert prepared(site, qos="scavenger", preemptible_without_checkpoint=True).qos == "scavenger"
    saved = prepared(site, qos="scavenger", checkpoint=CHECKPOINT)
    assert saved.requeue_flag is True  # Slurm's PreemptMode=REQUEUE puts it back in the queue


def test_protection_by_partition_moves_the_job_and_checks_that_partitions_limits() -> None:
    site = slurm_site(by="partition", preemptible=["debug"], protected="long")
    moved = prepared(site, protect=True, resources={"walltime": "2-00:00:00"})
    assert moved.partition == "long"
    with pytest.raises(SpecError, match=r"resources\.walltime: 8-00:00:00 exceeds partition long"):
        prepared(site, protect=True, resources={"walltime": "8-00:00:00"})


def test_pbs_names_queues_not_qos_and_the_site_config_says_so() -> None:
    site = SiteConfig.load("test-pbs")
    data = {**site.model_dump(), "preemption": {"preemptible": ["scavenger"]}}
    with pytest.raises(ValueError, match=r"preemption\.by: PBS has no QOS"):
        SiteConfig.model_validate(data)
    by_queue = {**data, "preemption": {"by": "partition", "preemptible": ["workq"]}}
    pbs = SiteConfig.model_validate(by_queue)
    with pytest.raises(SpecError, match="partition: 'workq' jobs may be preempted"):
        pbs.prepare(JobSpec.parse({"name": "j", "command": "true", "partition": "workq"}))


def test_a_site_file_with_pbs_preemption_by_qos_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "pbs.yaml"
    path.write_text("scheduler: pbs\npreemption:\n  preemptible: [low]\n")
    with pytest.raises(ConfigError, match=r"preemption\.by: PBS has no QOS"):
        SiteConfig.load(path)
