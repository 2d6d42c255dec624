"""The executor's failures as a Python user meets them, on the local backend: what cannot be
sent is refused before submission, and a worker that cannot run the call says why."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from hpcbridge import Cluster, SpecError
from hpcbridge.errors import RemoteError, WorkerError
from hpcbridge.executor import payload, run_task
from hpcbridge.executor.pool import ClusterExecutor

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])
TIMEOUT_S = 60


class Locked(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self) -> None:
        super().__init__("holding a lock")
        self.lock = threading.Lock()


def raises_unpicklable() -> None:
    raise Locked


def returns_unpicklable() -> Any:
    return threading.Lock()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.local(state_dir=tmp_path / "state") as local:
        yield local


@pytest.fixture
def executor(cluster: Cluster, tmp_path: Path) -> Iterator[ClusterExecutor]:
    with cluster.executor(root=tmp_path / "tasks") as pool:
        yield pool


@pytest.fixture
def no_submission(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> str:
        raise AssertionError(f"submitted: {args}")

    monkeypatch.setattr(cluster.backend, "submit", refuse)


@pytest.mark.usefixtures("no_submission")
def test_an_unpicklable_argument_is_refused_before_submission_by_name(
    executor: ClusterExecutor,
) -> None:
    lock = threading.Lock()
    with pytest.raises(SpecError, match=r"^argument 2 \(lock: cannot pickle") as caught:
        executor.submit(max, 1, lock)
    assert "cannot be sent to the cluster" in str(caught.value)
    with pytest.raises(SpecError, match=r"^keyword argument 'key' \(lock"):
        executor.submit(sorted, [1], key=lock)
    with pytest.raises(SpecError, match=r"^item 1: argument 1 \(lock"):
        executor.map(abs, [1, lock, 3])
    with pytest.raises(
        SpecError, match=r"^the function functools\.partial\(<built-in function max"
    ):
        executor.submit(functools.partial(max, lock))


def test_a_module_the_worker_cannot_import_is_named(
    executor: ClusterExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module only this process can import: its folder is on our sys.path, not the worker's.
    here_only = tmp_path / "client_side"
    here_only.mkdir()
    (here_only / "client_only_tools.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(here_only))
    import client_only_tools  # type: ignore[import-not-found]

    future = executor.submit(client_only_tools.double, 4)
    with pytest.raises(WorkerError, match="cannot import module 'client_only_tools'") as caught:
        future.result(timeout=TIMEOUT_S)
    assert "register_pickle_by_value" in str(caught.value)


def test_a_worker_of_another_hpcbridge_version_says_so(
    executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = payload.versions()
    monkeypatch.setattr(payload, "versions", lambda: {**real, "hpcbridge": "0.0.1"})
    future = executor.submit(pow, 2, 3)
    with pytest.raises(WorkerError, match=r"hpcbridge 0\.0\.1 there, \S+ here"):
        future.result(timeout=TIMEOUT_S)


def test_a_worker_of_another_python_refuses_before_unpickling(tmp_path: Path) -> None:
    call = tmp_path / payload.CALL_FILE
    header = json.dumps({**payload.versions(), "python": "3.99"}).encode()
    call.write_bytes(header + b"\nnot a pickle at all")
    outcome = run_task.run(call, tmp_path)
    assert outcome["kind"] == "worker"
    assert (
        f"python 3.99 there, {sys.version_info[0]}.{sys.version_info[1]} here"
        in (outcome["message"])
    )


def test_a_python_without_hpcbridge_is_named(cluster: Cluster, tmp_path: Path) -> None:
    bare = Path("/usr/bin/python3")
    if not bare.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {bare} is missing (.ci/run installs python3)")
        pytest.skip("no system Python to try")
    with cluster.executor(root=tmp_path / "tasks", python=str(bare)) as pool:
        future = pool.submit(pow, 2, 3)
        with pytest.raises(WorkerError, match="cannot import 'hpcbridge'") as caught:
            future.result(timeout=TIMEOUT_S)
    assert "No module named" in str(caught.value)  # the stderr tail, as the job wrote it


def test_a_python_that_is_not_there_is_named(cluster: Cluster, tmp_path: Path) -> None:
    with cluster.executor(root=tmp_path / "tasks", python=str(tmp_path / "no-python")) as pool:
        future = pool.submit(pow, 2, 3)
        with pytest.raises(WorkerError, match="Python was not found"):
            future.result(timeout=TIMEOUT_S)


def test_an_exception_that_will_not_pickle_comes_back_as_remote_error(
    executor: ClusterExecutor,
) -> None:
    future = executor.submit(raises_unpicklable)
    with pytest.raises(RemoteError, match=r"raised \S+Locked, which could not be sent") as caught:
        future.result(timeout=TIMEOUT_S)
    assert caught.value.remote_type.endswith("Locked")
    assert "in raises_unpicklable" in str(caught.value)


def test_a_value_that_will_not_pickle_is_named(executor: ClusterExecutor) -> None:
    future = executor.submit(returns_unpicklable)
    with pytest.raises(WorkerError, match="returned a lock, which cannot be pickled"):
        future.result(timeout=TIMEOUT_S)


def test_job_fields_the_executor_owns_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="command: the executor sets these itself"):
        cluster.executor(root=tmp_path, command="echo hi")
    with pytest.raises(SpecError, match="memory"):
        cluster.executor(root=tmp_path, resources={"memory": "8X"})
