"""A site whose cluster does not share the client's filesystem: ``shared_filesystem: false``
needs an absolute ``remote_root``, and the executor keeps its folders there (no service needed:
nothing here connects)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from hpcbridge import Cluster, ConfigError, SiteConfig, SpecError
from hpcbridge.site import SshTransportConfig

pytest.importorskip("cloudpickle")
pytest.importorskip("paramiko")


def site(tmp_path: Path, transport: str) -> SiteConfig:
    path = tmp_path / "remote.yaml"
    path.write_text(
        f"scheduler: slurm\ntransport:\n  kind: ssh\n  host: login.example\n{transport}"
    )
    return SiteConfig.load(path)


def test_the_filesystem_is_shared_unless_the_site_says_otherwise(tmp_path: Path) -> None:
    transport = site(tmp_path, "").transport
    assert isinstance(transport, SshTransportConfig)
    assert transport.shared_filesystem
    assert transport.remote_root is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("  shared_filesystem: false\n", "remote_root is required when shared_filesystem is false"),
        (
            "  shared_filesystem: false\n  remote_root: scratch/me\n",
            "remote_root 'scratch/me' is not an absolute path on the cluster",
        ),
        (
            "  shared_filesystem: false\n  remote_root: ~/tasks\n",
            "remote_root '~/tasks' is not an absolute path on the cluster",
        ),
        ("  remote_root: /scratch/me\n", r"remote_root \(/scratch/me\) is for a filesystem"),
    ],
)
def test_remote_root_is_required_absolute_and_only_when_not_shared(
    tmp_path: Path, fields: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        site(tmp_path, fields)
    assert "transport" in str(caught.value)


def test_the_executor_keeps_its_folders_under_remote_root_and_refuses_a_relative_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = site(tmp_path, "  shared_filesystem: false\n  remote_root: /scratch/me/tasks\n")
    with Cluster(config) as cluster:
        pool = cluster.executor()
        assert pool.folder.parent == PurePosixPath("/scratch/me/tasks")
        assert cluster.executor(root="/elsewhere").folder.parent == PurePosixPath("/elsewhere")
        with pytest.raises(SpecError, match="root='tasks': on a site whose filesystem"):
            cluster.executor(root="tasks")
    assert list(tmp_path.iterdir()) == [tmp_path / "remote.yaml"]
