"""Durations and memory sizes in the spellings schedulers use.

Users write walltimes and memory the way their scheduler's documentation does ("2-00:00:00",
"90", "8G"); hpcbridge keeps them as integers (seconds, megabytes) so every backend can print
them in its own dialect and comparisons against site limits are exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# sbatch(1), --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
# "days-hours:minutes" and "days-hours:minutes:seconds".
_DAYS_FORM = re.compile(r"(\d+)-(\d+)(?::(\d+))?(?::(\d+))?", re.ASCII)
_CLOCK_FORM = re.compile(r"(\d+)(?::(\d+))?(?::(\d+))?", re.ASCII)
# sbatch(1), --mem: "Default units are megabytes. Different units can be specified using the
# suffix [K|M|G|T]" (binary multiples).
_MEMORY_FORM = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.ASCII | re.IGNORECASE)
_MEGABYTES_PER_UNIT = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_duration(text: str | int) -> int:
    """Seconds in a Slurm-style duration; a bare number means minutes, as in sbatch."""
    if isinstance(text, int):
        return text * 60
    value = text.strip()
    days_match = _DAYS_FORM.fullmatch(value)
    if days_match:
        days, hours, minutes, seconds = (int(part or 0) for part in days_match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    clock_match = _CLOCK_FORM.fullmatch(value)
    if not clock_match:
        raise ValueError(f"{text!r} is not a duration; use minutes, MM:SS, HH:MM:SS or D-HH:MM:SS")
    parts = [int(part) for part in clock_match.groups() if part is not None]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def format_duration(seconds: int) -> str:
    """D-HH:MM:SS, or HH:MM:SS under a day: accepted by sbatch and readable by people."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    clock = f"{hrs:02d}:{mins:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def format_signed_duration(seconds: float | None) -> str:
    """A duration that may be negative (a slack, a lateness): -HH:MM:SS; "-" for None."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    return ("-" if whole < 0 else "") + format_duration(abs(whole))


def format_utc_minute(moment: datetime | None) -> str:
    """A moment as people read it in a report line: 2026-12-03 18:00 UTC; "-" for None."""
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def format_hours_clock(seconds: int) -> str:
    """HH:MM:SS with unbounded hours, the walltime spelling of PBS."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}"


def parse_memory(text: str | int) -> int:
    """Megabytes in a memory size such as "8G" or "512M"; a bare number means megabytes."""
    if isinstance(text, int):
        return text
    megabytes = memory_megabytes(text)
    if megabytes < 1:
        raise ValueError(f"{text!r} is less than one megabyte")
    return int(megabytes)


def memory_megabytes(text: str) -> float:
    """Megabytes, fractions kept, in a measured size such as sacct's "3104K" or "1.50G".

    Unlike parse_memory (for requests), sizes under a megabyte and zero are valid here.
    """
    match = _MEMORY_FORM.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory size; use a number with K, M, G or T")
    return float(match.group(1)) * _MEGABYTES_PER_UNIT[match.group(2).upper()]


def is_decimal(text: str) -> bool:
    """ASCII digits only, as schedulers write numbers. str.isdigit() also passes "²" (which
    int() refuses) and other scripts' digits, so a hostile or garbled field would end in a
    traceback rather than be skipped."""
    return text.isascii() and text.isdigit()


def format_memory(megabytes: int) -> str:
    """A request-sized memory as people write it: whole gigabytes as "80G", else "512M"."""
    return f"{megabytes // 1024}G" if megabytes % 1024 == 0 else f"{megabytes}M"
