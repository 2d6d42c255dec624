"""Every documented command, given bad input in any one of its parameters, ends with one of the
documented exit codes and a message, never a traceback.

The commands are read from the click tree itself, so a new verb or option is covered without a
test of its own; each parameter gets the bad values of its type while the others keep benign
ones. Everything runs on the local backend and a private SQLite ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hpcbridge.cli.main import main

DOCUMENTED_EXIT_CODES = set(range(10))
BAD_TEXT = ["", "\x00", "x\ny", "../../etc/passwd", "é\u2028", "' OR 1=1 --", "-" * 300]
BAD_NUMBERS = ["-1", "1e309", "nan", "x", "99999999999999999999"]
BAD_DATES = ["0001-01-01", "9999-12-31", "1969-12-31", "2026-13-01", "yesterday"]
BAD_LEDGERS = [
    "sqlite:////dev/null/x.sqlite",  # not a folder, even for root (who may make /nonexistent)
    "not a url",
    "postgresql://nobody@127.0.0.1:1/x",
]
BAD_SITES = ["no-such-site", "/dev/null", "../../etc/passwd"]
BAD_FILE_CONTENTS = {
    "garbage.yaml": "\x00\xff: [unclosed\n",
    "wrong-types.yaml": "name: [1, 2]\ncommand: 7\nresources: {walltime: -5, memory: lots}\n",
    "empty.yaml": "",
    "hostile.swf": "; UnixStartTime: 99999999999999999999\n1 2 3\n",
}


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def command_of(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for name, text in BAD_FILE_CONTENTS.items():
        made[name] = tmp_path / name
        made[name].write_text(text, errors="surrogateescape")
    made["job.yaml"] = tmp_path / "job.yaml"
    made["job.yaml"].write_text("name: ok\ncommand: 'true'\n")
    made["empty-dir"] = tmp_path / "empty-dir"
    made["empty-dir"].mkdir()
    return made


def benign(parameter: click.Parameter, files: dict[str, Path]) -> list[str]:
    """A value that lets the command reach its work, for a parameter that is not under test."""
    values = {
        "job_file": str(files["job.yaml"]),
        "workflow_file": str(files["job.yaml"]),
        "trace_file": str(files["hostile.swf"]),
        "directory": str(files["empty-dir"]),
        "job_ids": "4242",
        "job_id": "4242",
        "workflow_id": "no-such-workflow",
        "account": "acct",
    }
    return [values.get(parameter.name or "", "x")]


def bad_values(parameter: click.Parameter, files: dict[str, Path]) -> list[str]:
    kind = parameter.type
    if parameter.name == "ledger_url":
        return BAD_LEDGERS
    if parameter.name == "site":
        return BAD_SITES
    if isinstance(kind, click.Path):
        return [
            "/nonexistent/file",
            "/dev/null",
            str(files["empty-dir"]),
            *(str(files[name]) for name in BAD_FILE_CONTENTS),
        ]
    if isinstance(kind, click.DateTime):
        return BAD_DATES
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return BAD_NUMBERS
    if isinstance(kind, click.Choice | click.types.BoolParamType):
        return []  # click refuses anything else itself
    return BAD_TEXT


def invocations(path: tuple[str, ...], files: dict[str, Path]) -> Iterator[list[str]]:
    command = command_of(path)
    for under_test in command.params:
        for value in bad_values(under_test, files):
            argv = list(path)
            for parameter in command.params:
                chosen = [value] if parameter is under_test else None
                if chosen is None and not parameter.required:
                    continue
                chosen = chosen or benign(parameter, files)
                if isinstance(parameter, click.Argument):
                    argv += ["--", *chosen] if chosen[0].startswith("-") else chosen
                else:
                    argv += [parameter.opts[0], *chosen]
            yield argv


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", list(leaf_commands(main)), ids=" ".join)
def test_bad_input_never_ends_in_a_traceback(
    path: tuple[str, ...], files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # jobs the local backend runs write their output here
    runner = CliRunner()
    env = {
        "HPCBRIDGE_LEDGER": f"sqlite:///{tmp_path}/ledger.sqlite",
        "HPCBRIDGE_SITE": "local",
        "HPCBRIDGE_WORKFLOW_DIR": str(tmp_path / "workflows"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    tried = 0
    for argv in invocations(path, files):
        result = runner.invoke(main, argv, env=env)
        tried += 1
        shown = f"hpcbridge {' '.join(map(repr, argv))} -> exit {result.exit_code}"
        assert result.exit_code in DOCUMENTED_EXIT_CODES, shown
        assert "Traceback" not in result.output, f"{shown}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{shown}: {result.exception!r}"
        )
    assert tried > 0 or not command_of(path).params
