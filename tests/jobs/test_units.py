from __future__ import annotations

import pytest

from hpcbridge.jobs.units import format_duration, format_hours_clock, parse_duration, parse_memory


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90 * 60),
        ("5:30", 5 * 60 + 30),
        ("1:30:00", 5400),
        ("2-00:00:00", 2 * 86400),
        ("1-12", 86400 + 12 * 3600),
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
        (" 0:0:45 ", 45),
        (15, 15 * 60),
    ],
)
def test_slurm_duration_spellings(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "1:2:3:4", "-5", "1-", "abc"])
def test_bad_durations_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_format_for_sbatch_and_pbs() -> None:
    assert format_duration(5400) == "01:30:00"
    assert format_duration(2 * 86400 + 61) == "2-00:01:01"
    assert format_hours_clock(2 * 86400 + 61) == "48:01:01"
    assert parse_duration(format_duration(987654)) == 987654


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [
        ("8G", 8192),
        ("512M", 512),
        ("512", 512),
        ("1T", 1048576),
        ("2048K", 2),
        ("1.5G", 1536),
        ("4GB", 4096),
        ("4GiB", 4096),
        ("16g", 16384),
        (300, 300),
    ],
)
def test_memory_sizes(text: str | int, megabytes: int) -> None:
    assert parse_memory(text) == megabytes


@pytest.mark.parametrize(("text", "message"), [("8X", "not a memory size"), ("100K", "less than")])
def test_bad_memory_sizes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_memory(text)
