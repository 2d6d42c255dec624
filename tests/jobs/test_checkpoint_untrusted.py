"""A checkpoint directory is not trusted: other users may write it, and checkpoint sets are
copied in from elsewhere. Whatever its folder names and manifests hold, nothing in them runs,
nothing outside the checkpoint is read as part of it, and the bash wrapper and the Python
checker reach the same verdict.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpoint import Run, counter_spec, make_checkpoints, run, wait_for

from hpcbridge.jobs.checkpoint import latest_valid, list_checkpoints, read_checkpoint

pytestmark = pytest.mark.timeout(120)

CANARY = "pwned"
# Suffixes that ran code, or named a folder outside the checkpoint directory, before: bash
# evaluates array subscripts inside $((...)), and a newline in a name split it in two.
HOSTILE_SUFFIXES = [
    f"0+a[$(touch {CANARY})]",
    f"$(touch {CANARY})",
    f"1`touch {CANARY}`",
    f"x[$(touch {CANARY})]",
    f"0;touch {CANARY}",
    f"1\n$(touch {CANARY})",
    "000001\nsibling",
    "99999999999999999999999",
    "7 ",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not to the wrapper
]
PREFIXES = ["ckpt-", "corrupt-ckpt-", "ckpt-20990101T000000Z-"]


def plant(directory: Path, names: list[str]) -> list[Path]:
    """Hostile folders (each with a file, so they look used) in the checkpoint directory."""
    planted = []
    for name in names:
        folder = directory / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "state").write_text("666\n")
        planted.append(folder)
    return planted


def limit_checkpoint(folder: Path) -> tuple[int, str]:
    """One run of the counter stopped at the limit signal, as the scheduler's warning would."""
    spec = counter_spec(on_limit="exit", max_restarts=100)
    first = Run(folder, spec)
    wait_for((folder / "state").exists)
    first.process.send_signal(signal.SIGUSR1)
    code, _, err = first.finish()
    return code, err


def test_hostile_folder_names_run_nothing_and_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "sibling").mkdir()  # what "000001\nsibling" pointed the restart loop at
    names = [prefix + suffix for prefix in PREFIXES for suffix in HOSTILE_SUFFIXES]
    planted = plant(tmp_path / "ck", names)

    code, err = limit_checkpoint(tmp_path)
    assert code == 0, err
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err

    assert not (tmp_path / CANARY).exists()
    assert not (tmp_path / "ck" / CANARY).exists()
    assert (tmp_path / "sibling").is_dir()
    assert all(folder.is_dir() for folder in planted)  # not renamed, not pruned
    (committed,) = list_checkpoints(tmp_path / "ck")
    # Numbered after the wrapper's own checkpoints only: no hostile suffix was a number to it.
    assert committed.valid
    assert committed.name.endswith("-000001")
    assert out.splitlines()[0].startswith("resume ")
    assert f"resumes from {committed.name}" in err


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(PREFIXES),
    suffix=st.lists(
        st.sampled_from(["0", "9", "+", "a", "[", "]", "$", "(", ")", "`", ";", " ", "\n", "-"])
        | st.just(f"$(touch {CANARY})"),
        min_size=1,
        max_size=6,
    ).map("".join),
)
def test_any_folder_name_runs_nothing(
    tmp_path_factory: pytest.TempPathFactory, prefix: str, suffix: str
) -> None:
    folder = tmp_path_factory.mktemp("hostile")
    name = (prefix + suffix).replace("/", "_")
    plant(folder / "ck", [name])
    code, err = limit_checkpoint(folder)
    assert code == 0, err
    assert not (folder / CANARY).exists()
    assert not (folder / "ck" / CANARY).exists()
    assert (folder / "ck" / name).is_dir()


def manifest_line(path: Path, name: str) -> str:
    return f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}\n"


@pytest.mark.parametrize(
    ("listed", "problem"),
    [
        ("../outside", "outside the checkpoint"),
        ("/etc/hostname", "outside the checkpoint"),
        ("./sub/../../outside", "outside the checkpoint"),
        ("/dev/zero", "outside the checkpoint"),
    ],
)
def test_a_manifest_naming_files_outside_the_checkpoint_is_invalid(
    tmp_path: Path, listed: str, problem: str
) -> None:
    (newest,) = make_checkpoints(tmp_path, 1)
    folder = tmp_path / "ck" / newest
    outside = tmp_path / "ck" / "outside"
    outside.write_text("not part of any checkpoint\n")
    target = outside if listed.endswith("outside") else Path(listed)
    digest = "0" * 64 if listed == "/dev/zero" else None
    line = f"{digest}  {listed}\n" if digest else manifest_line(target, listed)
    with (folder / ".hpcbridge-manifest").open("a") as manifest:
        manifest.write(line)

    checkpoint = read_checkpoint(folder)
    assert not checkpoint.valid
    assert problem in (checkpoint.problem or "")
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "start 0"  # the wrapper refused it too
    assert f"checkpoint {newest} is corrupt" in err


def test_files_the_manifest_does_not_cover_make_a_checkpoint_invalid(tmp_path: Path) -> None:
    (newest,) = make_checkpoints(tmp_path, 1)
    (tmp_path / "ck" / newest / "planted.py").write_text("import os\n")
    checkpoint = read_checkpoint(tmp_path / "ck" / newest)
    assert not checkpoint.valid
    assert "planted.py" in (checkpoint.problem or "")
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "start 0"


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_links_and_special_files_make_a_checkpoint_invalid(tmp_path: Path, kind: str) -> None:
    (newest,) = make_checkpoints(tmp_path, 1)
    folder = tmp_path / "ck" / newest
    if kind == "symlink":
        (folder / "state").unlink()
        (folder / "state").symlink_to(tmp_path / "state")  # same bytes, outside the checkpoint
    else:
        os.mkfifo(folder / "pipe")
    checkpoint = read_checkpoint(folder)
    assert not checkpoint.valid
    assert "not a regular file" in (checkpoint.problem or "")
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert out.splitlines()[0] == "start 0"


def test_large_files_are_hashed_in_chunks(tmp_path: Path) -> None:
    (newest,) = make_checkpoints(tmp_path, 1)
    folder = tmp_path / "ck" / newest
    big = folder / "big.bin"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse: 64 MiB to read, no disk used
    subprocess.run(
        "find . -type f ! -name .hpcbridge-manifest -print0 | LC_ALL=C sort -z | "
        "xargs -0 sha256sum > .hpcbridge-manifest",
        shell=True,
        cwd=folder,
        check=True,
    )
    tracemalloc.start()
    try:
        checkpoint = read_checkpoint(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checkpoint.valid, checkpoint.problem
    assert peak < 8 * 1024 * 1024


def test_names_with_unicode_line_separators_are_one_name_to_both_readers(tmp_path: Path) -> None:
    spec = counter_spec(on_limit="exit", max_restarts=100)
    spec["checkpoint"]["command"] = (
        'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"; '
        "for n in $'a\\u2028b' $'c\\u2029d' $'e\\u0085f' $'g\\x0bh' $'i\\x0cj' $'k\\x1cl'; do "
        'echo "$n" > "$HPCBRIDGE_CHECKPOINT_TMP/$n"; done'
    )
    first = Run(tmp_path, spec)
    wait_for((tmp_path / "state").exists)
    first.process.send_signal(signal.SIGUSR1)
    assert first.finish()[0] == 0
    checkpoint = latest_valid(tmp_path / "ck")  # Python: valid
    names = {p.name for p in checkpoint.path.iterdir()}
    assert {"a\u2028b", "c\u2029d", "e\u0085f"} <= names
    code, out, err = run(tmp_path, counter_spec(max_restarts=100))
    assert code == 0, err
    assert f"resumes from {checkpoint.name}" in err  # bash: valid too
    assert out.splitlines()[0].startswith("resume ")
