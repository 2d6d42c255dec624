"""PBS value syntax: durations, sizes, and the several ways PBS prints a time.

Sizes are kept in kilobytes, as PBS reports them (``mem=65536kb`` in exec_vnode), and printed
back in the largest unit that divides them exactly (64mb stays 64mb).
"""

from __future__ import annotations

import re
import time

_DURATION = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+)(?:\.(\d+))?$")
_SIZE = re.compile(r"^(\d+)(b|w|kb|kw|mb|mw|gb|gw|tb|tw|pb|pw)?$", re.IGNORECASE)
_UNIT_KB = {"k": 1, "m": 1024, "g": 1024**2, "t": 1024**3, "p": 1024**4}


def parse_duration(text: str) -> int | None:
    """Seconds in ``[[HH:]MM:]SS[.ms]`` (PBS's walltime syntax), or None when malformed."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    hours, minutes, seconds, _ms = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds)


def hms(seconds: float) -> str:
    """HH:MM:SS, hours unbounded (how PBS prints walltime and cput)."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def parse_size_kb(text: str) -> int | None:
    """Kilobytes in a PBS size (``64mb``, ``2gb``, ``100``=bytes, ``4kw``=words), or None."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    number, unit = int(match.group(1)), (match.group(2) or "b").lower()
    word = unit.endswith("w")
    factor = 8 if word else 1
    if unit in ("b", "w"):
        return -(-number * factor // 1024)  # bytes up to whole kilobytes
    return number * factor * _UNIT_KB[unit[0]]


def format_kb(kb: int) -> str:
    """A size in the largest unit that represents it exactly (65536 -> 64mb)."""
    for unit, factor in (("tb", 1024**3), ("gb", 1024**2), ("mb", 1024)):
        if kb and kb % factor == 0:
            return f"{kb // factor}{unit}"
    return f"{kb}kb"


def rounded_gb(kb: int) -> str:
    """Sizes as pbsnodes -aS prints them (rounded to whole gb)."""
    return f"{round(kb / 1024**2)}gb"


def ctime(stamp: float) -> str:
    """C ctime() without the newline: "Mon Nov 23 12:13:21 2026" (times in qstat -f)."""
    return time.ctime(stamp)


def log_stamp(stamp: float) -> str:
    """ "11/23/2026 12:13:21": the prefix of accounting and daemon log lines."""
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(stamp))


def log_day(stamp: float) -> str:
    """YYYYMMDD: the name of a day's log file."""
    return time.strftime("%Y%m%d", time.localtime(stamp))


def short_when(stamp: float) -> str:
    """ "Mon Nov 23 at 12:13": how scheduler comments give a time."""
    return time.strftime("%a %b %d at %H:%M", time.localtime(stamp))


def parse_exec_time(text: str, now: float) -> int | None:
    """Epoch seconds of qsub -a ``[[[[CC]YY]MM]DD]hhmm[.SS]``, or None when malformed.

    As qsub(1) says, a time without a day that has already passed today means tomorrow.
    """
    match = re.match(r"^(\d{4}|\d{6}|\d{8}|\d{10}|\d{12})(?:\.(\d{2}))?$", text)
    if not match:
        return None
    digits, sec = match.group(1), int(match.group(2) or 0)
    local = time.localtime(now)
    parts = [local.tm_year, local.tm_mon, local.tm_mday]
    rest = digits[:-4]
    hour, minute = int(digits[-4:-2]), int(digits[-2:])
    if len(rest) >= 2:
        parts[2] = int(rest[-2:])
    if len(rest) >= 4:
        parts[1] = int(rest[-4:-2])
    if len(rest) == 6:
        parts[0] = 2000 + int(rest[:2])
    elif len(rest) == 8:
        parts[0] = int(rest[:4])
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= sec < 60):
        return None
    if not (1 <= parts[1] <= 12 and 1 <= parts[2] <= 31):
        return None
    try:
        stamp = time.mktime((parts[0], parts[1], parts[2], hour, minute, sec, 0, 0, -1))
    except (OverflowError, ValueError):
        return None
    if not rest and stamp < now:
        stamp += 86400
    return int(stamp)
