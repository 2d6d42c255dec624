"""The PBS sources: hand-made day files around midnight, then jobs on the PBS emulator.

tests/data/pbs/accounting holds two days (server clock in UTC) in the record shapes of
../shared/pbs-reference/accounting_log_sample.txt: 20.srv runs across midnight, 21.srv is
rerun on the 22nd and runs again on the 23rd, 22.srv is queued on the 22nd and deleted on the
23rd, 23.srv is deleted at 23:59:58 and its E record comes after midnight, 24.srv starts on the
23rd after being queued days before, 25.srv runs and fails on the 22nd.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import JobState, LocalTransport, SchedulerError
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord
from hpcbridge.ledger.sources.base import AccountingSource, Window
from hpcbridge.ledger.sources.pbs import PbsLogSource, PbsQstatSource
from hpcbridge.ledger.sources.slurm import SacctSource
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import usage_report
from hpcbridge.transports.fake import FakeTransport

LOGS = Path(__file__).parents[1] / "data" / "pbs" / "accounting"
DAY_22 = Window(datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC), True)
DAY_23 = Window(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC), True)

Key = tuple[str, int, int]


def by_key(records: list[AttemptRecord]) -> dict[Key, AttemptRecord]:
    keyed = {(r.job_id, r.array_index, r.attempt): r for r in records}
    assert len(keyed) == len(records)
    return keyed


def log_source(context_days: int = 1, first_sync: timedelta = timedelta(days=30)) -> PbsLogSource:
    return PbsLogSource(
        LocalTransport(),
        accounting_dir=str(LOGS),
        server_tz=UTC,
        context_days=context_days,
        first_sync=first_sync,
    )


def states(records: dict[Key, AttemptRecord]) -> dict[Key, JobState]:
    return {key: record.state for key, record in records.items()}


def test_every_source_is_an_accounting_source() -> None:
    transport = LocalTransport()
    sources: list[AccountingSource] = [  # mypy checks each against the protocol
        SacctSource(transport),
        PbsLogSource(transport),
        PbsQstatSource(transport),
    ]
    assert [source.name for source in sources] == ["sacct", "pbs-log", "pbs-qstat"]


def test_windows_are_server_days_and_today_is_incomplete() -> None:
    now = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
    source = log_source(first_sync=timedelta(days=2))
    assert source.windows(None, now) == [
        DAY_22,
        DAY_23,
        Window(datetime(2026, 11, 24, tzinfo=UTC), now, False),
    ]
    assert source.windows(datetime(2026, 11, 23, 15, tzinfo=UTC), now)[0] == DAY_23
    # At 03:30 UTC a server five hours behind is still on the 23rd, which began at 05:00 UTC.
    eastern = PbsLogSource(LocalTransport(), server_tz=timezone(timedelta(hours=-5)))
    assert eastern.windows(datetime(2026, 11, 23, 6, tzinfo=UTC), now) == [
        Window(datetime(2026, 11, 23, 5, tzinfo=UTC), now, False)
    ]


def test_the_day_before_midnight() -> None:
    found = by_key(log_source().fetch(DAY_22))
    assert states(found) == {
        ("25.srv", NOT_AN_ARRAY, 1): JobState.FAILED,
        ("21.srv", NOT_AN_ARRAY, 1): JobState.REQUEUED,
        ("22.srv", NOT_AN_ARRAY, 1): JobState.PENDING,
        ("20.srv", NOT_AN_ARRAY, 1): JobState.RUNNING,
        ("23.srv", NOT_AN_ARRAY, 1): JobState.RUNNING,  # its D is in, its E not yet
    }
    failed = found[("25.srv", NOT_AN_ARRAY, 1)]
    assert (failed.exit_code, failed.elapsed_s, failed.cpu_time_s) == (3, 1800, 5)
    assert (failed.alloc_cpus, failed.node_count, failed.node_list) == (2, 1, "n1")
    assert (failed.req_walltime_s, failed.max_rss_mb) == (3600, 2.0)
    assert failed.start == datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC)


def test_the_day_after_midnight_keeps_the_numbers() -> None:
    found = by_key(log_source().fetch(DAY_23))
    assert states(found) == {
        ("23.srv", NOT_AN_ARRAY, 1): JobState.CANCELLED,  # the D before midnight counts
        ("20.srv", NOT_AN_ARRAY, 1): JobState.COMPLETED,
        ("21.srv", NOT_AN_ARRAY, 2): JobState.COMPLETED,
        ("22.srv", NOT_AN_ARRAY, 1): JobState.CANCELLED,
    }  # 24.srv runs, but nothing read says which run it is: it waits for its E record
    across = found[("20.srv", NOT_AN_ARRAY, 1)]
    assert across.start == datetime(2026, 11, 22, 23, 59, 50, tzinfo=UTC)
    assert across.end == datetime(2026, 11, 23, 0, 0, 10, tzinfo=UTC)
    deleted = found[("22.srv", NOT_AN_ARRAY, 1)]
    assert (deleted.name, deleted.start, deleted.elapsed_s) == ("gaveup", None, 0)
    assert found[("23.srv", NOT_AN_ARRAY, 1)].exit_signal == 15
    # Without the day before, run_count still numbers every run that ends the same way.
    alone = by_key(log_source(context_days=0).fetch(DAY_23))
    assert set(alone) == set(found)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    source = PbsLogSource(LocalTransport(), accounting_dir=str(tmp_path), server_tz=UTC)
    assert source.fetch(DAY_23) == []  # no file for these days: no records
    (tmp_path / "20261123").mkdir()  # root reads any file; a folder cannot be read
    with pytest.raises(SchedulerError, match="use the pbs-qstat source"):
        source.fetch(DAY_23)


# ---- the PBS emulator --------------------------------------------------------------------------


def qsub(emulator: PbsEmulator, script: str, *options: str) -> str:
    result = emulator.run("qsub", *options, input=script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(120)
def test_jobs_on_the_emulator(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran-once"
    done = qsub(pbs_emulator, "true\n", "-N", "done")
    failed = qsub(pbs_emulator, "exit 3\n", "-N", "fails")
    queued = qsub(pbs_emulator, "true\n", "-N", "held", "-h")
    killed = qsub(pbs_emulator, "sleep 300\n", "-N", "killed")
    rerun = qsub(pbs_emulator, f"[ -e {marker} ] && exit 0\ntouch {marker}\nsleep 300\n")
    array = qsub(pbs_emulator, "true\n", "-N", "arr", "-J", "1-2")
    pbs_emulator.wait_for(killed, "R")
    pbs_emulator.wait_for(rerun, "R")
    assert pbs_emulator.run("qdel", queued, killed).returncode == 0
    # qrerun needs operator or manager rights, as on a real server.
    assert pbs_emulator.run("qrerun", rerun, user="root").returncode == 0
    for job_id in (done, failed, queued, killed, rerun, array):
        pbs_emulator.wait_for(job_id, "F")
    history = json.loads(pbs_emulator.run("qstat", "-x", "-f", "-F", "json").stdout)["Jobs"]
    assert history[rerun]["run_count"] == 2

    logs = PbsLogSource(LocalTransport(), accounting_dir=str(pbs_emulator.accounting_dir))
    today = logs.windows(None, datetime.now(UTC))[-1]
    assert not today.complete
    found = by_key(logs.fetch(today))
    assert states(found) == {
        (done, NOT_AN_ARRAY, 1): JobState.COMPLETED,
        (failed, NOT_AN_ARRAY, 1): JobState.FAILED,
        (queued, NOT_AN_ARRAY, 1): JobState.CANCELLED,
        (killed, NOT_AN_ARRAY, 1): JobState.CANCELLED,
        (rerun, NOT_AN_ARRAY, 1): JobState.REQUEUED,
        (rerun, NOT_AN_ARRAY, 2): JobState.COMPLETED,
        (array, 1, 1): JobState.COMPLETED,
        (array, 2, 1): JobState.COMPLETED,
    }
    assert found[(failed, NOT_AN_ARRAY, 1)].exit_code == history[failed]["Exit_status"] == 3
    assert found[(queued, NOT_AN_ARRAY, 1)].start is None
    assert found[(queued, NOT_AN_ARRAY, 1)].name == "held"
    assert found[(killed, NOT_AN_ARRAY, 1)].exit_signal == history[killed]["Exit_status"] - 256
    first, second = found[(rerun, NOT_AN_ARRAY, 1)], found[(rerun, NOT_AN_ARRAY, 2)]
    assert first.end is not None
    assert second.start is not None
    assert first.end <= second.start

    qstat = PbsQstatSource(LocalTransport())
    (window,) = qstat.windows(None, datetime.now(UTC) + timedelta(seconds=1))
    latest = by_key(qstat.fetch(window))
    assert states(latest) == {
        (done, NOT_AN_ARRAY, 1): JobState.COMPLETED,
        (failed, NOT_AN_ARRAY, 1): JobState.FAILED,
        (queued, NOT_AN_ARRAY, 1): JobState.CANCELLED,
        (killed, NOT_AN_ARRAY, 1): JobState.CANCELLED,
        (rerun, NOT_AN_ARRAY, 2): JobState.COMPLETED,  # qstat keeps only the latest run
        (array, 1, 1): JobState.COMPLETED,
        (array, 2, 1): JobState.COMPLETED,
    }
    for key, record in latest.items():
        from_log = found[key]
        assert (record.start, record.end) == (from_log.start, from_log.end), key
        assert (record.exit_code, record.exit_signal) == (from_log.exit_code, from_log.exit_signal)
        assert (record.alloc_cpus, record.name) == (from_log.alloc_cpus, from_log.name)
    assert latest[(queued, NOT_AN_ARRAY, 1)].start is None
    # qstat's text format (older servers without -F json) gives the same records, but for
    # the comment (the reason), whose wrapped lines the text parser joins without a space.
    text = PbsQstatSource(LocalTransport(), json_output=False)
    unwrapped = {key: replace(r, reason=None) for key, r in by_key(text.fetch(window)).items()}
    assert unwrapped == {key: replace(r, reason=None) for key, r in latest.items()}
    # A window that ended before the jobs were submitted has none of them.
    early = Window(window.start, window.start + timedelta(seconds=1), True)
    assert qstat.fetch(early) == []


# ---- what the ledger charges: PBS's own charge, on the real server's logs ----------------------

# The day each reference log covers (the server's clock, UTC): PbsLogSource reads day files.
REFERENCE_DAYS = {
    "20261123": "accounting_log_sample.txt",
    "20261203": "multi-accounting_log_jobs-254-276.txt",
}
_WALLTIME = re.compile(r"\bresources_used\.walltime=(\d+):(\d\d):(\d\d)\b")
_NCPUS = re.compile(r"\bResource_List\.ncpus=(\d+)\b")
_SPAN = re.compile(r"\bstart=(\d+)\b.*\bend=(\d+)\b")


def charged_in_the_log(text: str) -> tuple[int, int, int]:
    """Straight from the raw lines: the core-seconds PBS charged (resources_used.walltime x
    Resource_List.ncpus over every E and R record that has a walltime: each run once; array
    parents' E records have none), cpus x (end - start) over the same records, and how many."""
    charged = spanned = runs = 0
    for line in text.split("\n"):
        walltime = _WALLTIME.search(line)
        if line.split(";")[1:2] not in (["E"], ["R"]) or walltime is None:
            continue
        hours, minutes, seconds = map(int, walltime.groups())
        ncpus = _NCPUS.search(line)
        span = _SPAN.search(line)
        assert ncpus is not None, line
        assert span is not None, line
        charged += int(ncpus.group(1)) * (hours * 3600 + minutes * 60 + seconds)
        spanned += int(ncpus.group(1)) * (int(span.group(2)) - int(span.group(1)))
        runs += 1
    return charged, spanned, runs


def test_core_hours_are_what_pbs_charged_on_the_reference_logs(
    pbs_reference: Path, ledger: Ledger
) -> None:
    """Usage is resources_used.walltime x ncpus, as PBS bills, not cpus x (end - start),
    which is one or two seconds longer on most short jobs of a real server."""

    def cat(argv: list[str], stdin: str | None) -> str:
        name = REFERENCE_DAYS.get(Path(argv[-1]).name)
        if name is None:
            missing = "No such file or directory"
            raise SchedulerError("cat", argv=argv, returncode=1, stderr=missing)
        return (pbs_reference / name).read_text()

    source = PbsLogSource(FakeTransport(cat), server_tz=UTC, context_days=0)
    for day in REFERENCE_DAYS:
        start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
        ledger.upsert_attempts(
            "vm", "pbs", source.fetch(Window(start, start + timedelta(days=1), True)), source="t"
        )
    texts = [(pbs_reference / name).read_text() for name in REFERENCE_DAYS.values()]
    charged, spanned, runs = map(sum, zip(*map(charged_in_the_log, texts), strict=True))
    assert runs > 30
    assert charged < spanned  # the difference this is about is in the logs
    first, last = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    for by in (["account"], ["month", "state"]):
        report = usage_report(ledger, by, first, last, now=last)
        assert report.total.core_hours * 3600 == pytest.approx(charged, abs=1e-6)
    # The month of 23 November alone, read from the attempts rather than the rollup.
    november = usage_report(ledger, ["user"], first, datetime(2026, 11, 24, tzinfo=UTC), now=last)
    assert november.total.core_hours * 3600 == pytest.approx(charged_in_the_log(texts[0])[0])
