from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge import ConfigError, JobSpec, SiteConfig, SpecError


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_packaged_sites_load_by_name() -> None:
    assert SiteConfig.load("local").scheduler == "local"
    slurm = SiteConfig.load("test-slurm")
    assert slurm.partitions["long"].max_walltime == 7 * 86400
    assert SiteConfig.load("example-slurm").default_account == "my-grant"


def test_user_sites_are_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "hpcbridge" / "sites"
    folder.mkdir(parents=True)
    write(folder, "scheduler: slurm\ndefault_partition: mine\n", "local.yaml")
    site = SiteConfig.load("local")
    assert site.scheduler == "slurm"
    assert site.name == "local"


def test_relative_paths_are_taken_from_the_config_file(tmp_path: Path) -> None:
    site = SiteConfig.load(write(tmp_path, "scheduler: slurm\ntemplate_dir: tpl\nstate_dir: st\n"))
    assert site.template_dir == tmp_path / "tpl"
    assert site.state_dir == tmp_path / "st"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scheduler: lsf\n", "scheduler: Input should be 'slurm', 'pbs' or 'local'"),
        ("scheduler: slurm\npartitions: {a: {max_walltime: soon}}\n", "partitions.a.max_walltime"),
        ("scheduler: slurm\nsurprise: 1\n", "surprise: no such field"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("scheduler: [unclosed\n", "cannot read site config"),
        (
            "scheduler: slurm\npriorities: {levels: {low: {nice: 9}}, default: mid}\n",
            "priorities.default: 'mid' is not a level (low)",
        ),
        (
            "scheduler: slurm\npriorities: {accounts: {physics: high}}\n",
            "priorities.accounts.physics: 'high' is not a level (it defines none)",
        ),
        (
            "scheduler: pbs\npriorities: {levels: {high: {qos: urgent}}}\n",
            "priorities.levels.high.qos: PBS has no QOS",
        ),
        (
            "scheduler: slurm\npriorities: {levels: {low: {nice: 9}}, deadline_steps: "
            "[{slack_below: '24:00:00', level: urgent}]}\n",
            "priorities.deadline_steps[0].level: 'urgent' is not a level (low)",
        ),
        (
            "scheduler: slurm\npriorities: {deadlines: {physics: 2026-12-24T00:00:00Z}}\n",
            "priorities.deadlines: deadlines raise levels; define levels first",
        ),
        (
            "scheduler: slurm\nclients: {a: {share: 60}, b: {share: 50, max: 80}}\n",
            "clients: guaranteed shares add up to 110% (a 60, b 50)",
        ),
        ("scheduler: slurm\nclients: {a: {share: 60, max: 50}}\n", "max (50) is below the"),
        ("scheduler: slurm\ndeadlines: {margin: 1.5}\n", "deadlines.margin"),
        (
            "scheduler: slurm\nenergy: {windows: [{start: '25:00', end: '07:00', price: 1}]}\n",
            "energy.windows.0.start",
        ),
        ("scheduler: slurm\nenergy: {timezone: Mars/Olympus}\n", "not an IANA time zone name"),
        (
            "scheduler: slurm\npriorities: {levels: {low: {}}, deadlines: "
            "{physics: '2026-12-24T00:00:00'}}\n",
            "priorities.deadlines.physics: Input should have timezone info",
        ),
    ],
)
def test_invalid_site_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="site config") as caught:
        SiteConfig.load(path)
    assert message in str(caught.value)


def test_missing_sites_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"known sites: .*test-slurm"):
        SiteConfig.load("no-such-site")
    with pytest.raises(ConfigError, match="does not exist"):
        SiteConfig.load("/nonexistent/site.yaml")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"partition": "gpu"},
            "partition: 'gpu' is not a partition of site test-slurm (debug, long)",
        ),
        (
            {"resources": {"walltime": "2:00:00"}},
            "resources.walltime: 02:00:00 exceeds partition debug's limit of 01:00:00",
        ),
        ({"resources": {"gpus": 3}}, "resources.gpus: 3 exceeds partition debug's limit of 2"),
        (
            {"resources": {"gpus": 1, "gpu_type": "h100"}},
            "resources.gpu_type: 'h100' is not in partition debug (it has a100, v100)",
        ),
    ],
)
def test_partition_limits_are_checked_before_submission(
    fields: dict[str, object], message: str
) -> None:
    site = SiteConfig.load("test-slurm")
    with pytest.raises(SpecError) as caught:
        site.prepare(JobSpec.parse({"name": "j", "command": "true", **fields}))
    assert message in str(caught.value)


def test_node_limits(tmp_path: Path) -> None:
    site = SiteConfig.load(
        write(tmp_path, "scheduler: slurm\npartitions: {small: {max_nodes: 2}}\n")
    )
    with pytest.raises(SpecError, match=r"resources\.nodes: 4 exceeds partition small's limit"):
        site.prepare(
            JobSpec.parse(
                {"name": "j", "command": "true", "partition": "small", "resources": {"nodes": 4}}
            )
        )


def test_a_misspelt_site_setting_names_the_one_meant(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text("scheduler: slurm\ndefault_partiton: debug\n")
    with pytest.raises(
        ConfigError, match="default_partiton: no such field; did you mean 'default_partition'"
    ):
        SiteConfig.load(site_file)


def test_a_jobs_priority_level_becomes_its_qos_and_nice(tmp_path: Path) -> None:
    site = SiteConfig.load(
        write(
            tmp_path,
            "scheduler: slurm\npriorities:\n"
            "  levels: {low: {nice: 100}, normal: {nice: 0}, high: {qos: high, nice: 0}}\n"
            "  default: normal\n  accounts: {physics: high}\n",
        )
    )

    def prepared(**fields: object) -> tuple[str | None, str | None, int | None]:
        job = site.prepare(JobSpec.model_validate({"name": "j", "command": "true", **fields}))
        return job.priority, job.qos, job.nice

    assert prepared() == ("normal", None, 0)
    assert prepared(account="physics") == ("high", "high", 0)
    assert prepared(account="physics", priority="low") == ("low", None, 100)
    assert prepared(priority="high", qos="long", nice=5) == ("high", "long", 5)  # its own win
    with pytest.raises(
        SpecError, match=r"priority: 'top' is not a level of site .* \(low, normal, high\)"
    ):
        prepared(priority="top")
