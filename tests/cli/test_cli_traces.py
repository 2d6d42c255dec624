"""Commands reading an SWF trace say which lines they skipped, in the same words."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hpcbridge.cli.main import main

DAY = 86400
EPOCH = 1_705_276_800  # 2024-01-15: months Feb .. Oct are whole
MALFORMED = {
    3: "3 7200 0 lots 8 -1 -1 8 7200 -1 1 1 1 -1 1 -1 -1 -1",  # run time is not a number
    5: "4 9000 0 3600",  # too few fields
}


def trace_with_bad_lines(path: Path) -> Path:
    """Nine whole months of jobs, every two days, with the MALFORMED lines among them."""
    lines = [f"; UnixStartTime: {EPOCH}"]
    number = 0
    for day in range(0, 290, 2):
        for group in (1, 2):
            number += 1
            run = 20_000 * group + 100 * (day % 7)
            lines.append(
                f"{number + 100} {day * DAY + group * 600} 0 {run} {4 * group} -1 -1 "
                f"{4 * group} {2 * run} -1 1 {group} {group} -1 1 -1 -1 -1"
            )
    for line_number, text in MALFORMED.items():
        lines.insert(line_number - 1, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("warning:", "  line"))]


def test_evaluate_and_import_list_malformed_lines_alike(tmp_path: Path) -> None:
    trace = trace_with_bad_lines(tmp_path / "damaged.swf")
    runner = CliRunner()
    imported = runner.invoke(
        main, ["ledger", "import-swf", str(trace), "--ledger", f"sqlite:///{tmp_path}/l.sqlite"]
    )
    assert imported.exit_code == 0, imported.output
    scored = runner.invoke(main, ["forecast", "evaluate", str(trace), "--json"])
    assert scored.exit_code == 0, scored.output
    listed = warnings_of(imported.stderr)
    assert listed[0] == "warning: 2 malformed lines not imported:"
    assert [line.split(":")[0] for line in listed[1:]] == ["  line 3", "  line 5"]
    assert warnings_of(scored.stderr) == [
        "warning: 2 malformed lines not scored:",
        *listed[1:],
    ]
    assert scored.stdout.startswith("{")  # the JSON alone on stdout


def test_evaluate_gives_up_past_max_bad_lines(tmp_path: Path) -> None:
    trace = trace_with_bad_lines(tmp_path / "damaged.swf")
    refused = CliRunner().invoke(main, ["forecast", "evaluate", str(trace), "--max-bad-lines", "1"])
    assert refused.exit_code == 3, refused.output
    assert "more than 1 malformed job lines" in refused.stderr
