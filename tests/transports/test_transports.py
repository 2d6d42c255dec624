from __future__ import annotations

import time

import pytest

from hpcbridge import CommandResult, CommandTimeout, FakeTransport, LocalTransport, TransportError


def test_local_transport_reports_output_and_exit_status() -> None:
    result = LocalTransport().run(["sh", "-c", 'echo "$X"; echo err >&2; exit 3'], env={"X": "y"})
    assert result == CommandResult(
        ("sh", "-c", 'echo "$X"; echo err >&2; exit 3'), 3, "y\n", "err\n"
    )
    assert not result.ok


def test_local_transport_passes_stdin_without_a_shell() -> None:
    text = "$(echo no); `echo no`\n"
    assert LocalTransport().run(["cat"], stdin=text).stdout == text


def test_local_transport_kills_commands_past_their_limit() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"ran past 0\.3 s") as caught:
        LocalTransport().run(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 5
    assert caught.value.transient


def test_commands_within_their_limit_are_not_killed() -> None:
    transport = LocalTransport(default_timeout=0.5)
    for _ in range(3):
        assert transport.run(["true"]).ok
    time.sleep(0.6)  # the expired deadlines of finished commands must not kill anything new
    assert transport.run(["sleep", "0.1"]).ok


@pytest.mark.parametrize("program", ["/nonexistent/sbatch", "/etc/hostname"])
def test_unrunnable_programs_are_transport_errors(program: str) -> None:
    with pytest.raises(TransportError, match=program):
        LocalTransport().run([program])


def test_fake_transport_records_calls_and_accepts_three_answer_forms() -> None:
    answers = iter(["123\n", (1, "", "boom"), CommandResult(("x",), 0, "ok", "")])
    fake = FakeTransport(lambda argv, stdin: next(answers))
    assert fake.run(["sbatch"], stdin="script").stdout == "123\n"
    assert fake.run(["squeue"]).stderr == "boom"
    assert fake.run(["x"], env={"TZ": "UTC"}).stdout == "ok"
    assert [call.argv for call in fake.calls] == [("sbatch",), ("squeue",), ("x",)]
    assert fake.calls[0].stdin == "script"
    assert fake.calls[2].env == {"TZ": "UTC"}
    fake.close()
    assert fake.closed
