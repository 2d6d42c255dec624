"""PBS through its commands: builders from cli, parsers from parse, one transport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpcbridge.backends.base import with_array_totals
from hpcbridge.backends.commands import ErrorTable, SchedulerCommands
from hpcbridge.backends.pbs import cli, parse
from hpcbridge.errors import JobNotFound, SpecError
from hpcbridge.jobs.checkpoint import checkpoint_context
from hpcbridge.jobs.rendering import ShellCode
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo
from hpcbridge.transports.base import Transport

# Times in qstat's ctime-style strings come out in UTC, so parsers never guess the zone.
UTC_ENV = {"TZ": "UTC"}
ERRORS = ErrorTable(
    unavailable="the PBS server",
    # What PBS clients print when pbs_server cannot be reached or is busy (pbs_connect).
    transient=(
        "cannot connect to server",
        "Connection refused",
        "Connection timed out",
        "Server is busy",
        "pbs_iff",
        "No route to host",
        "End of File",
    ),
    not_found=("Unknown Job Id", "Job has finished", "illegally formed job identifier"),
    # PBSE_PERM (exit 159), e.g. qrerun by a plain user (pbs-reference/multi-qrerun_*).
    denied=("Unauthorized Request",),
    rights={"qrerun": "qrerun takes operator or manager rights on PBS"},
    # qsub refusals traced back to the JobSpec field responsible.
    submit_fields={
        "Unknown queue": "partition",
        "Resource_List.walltime": "resources.walltime",
        "Unknown resource": "resources",
        "select.mem": "resources.memory",
        "Resource_List.select": "resources",
        "illegal -W value": "depends_on",
        "-J": "array",
        "Account_Name": "account",
        "Job_Name": "name",
    },
)


class PbsBackend:
    """Submit, watch and steer PBS jobs with qsub, qstat, qdel, qhold, qrls and qrerun."""

    name = "pbs"
    template = "pbs/job.sh.j2"

    def __init__(
        self,
        transport: Transport,
        *,
        json_output: bool = True,
        job_history: bool = True,
        gpu_type_resource: str | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.json_output = json_output
        self.job_history = job_history
        self.missing_job_hint = (
            ""
            if job_history
            else "job history is off on this PBS server (job_history_enable=False), so "
            "finished jobs can no longer be queried"
        )
        self.gpu_type_resource = gpu_type_resource
        self.commands = SchedulerCommands(transport, ERRORS, attempts=attempts, backoff=backoff)

    def template_context(self, spec: JobSpec) -> dict[str, Any]:
        """Directive values in PBS's dialect; fields PBS cannot express are refused here."""
        if spec.qos is not None:
            raise SpecError(
                f"qos: {spec.qos!r} cannot be asked of PBS, which has no QOS; use a queue"
            )
        if spec.deadline is not None:
            raise SpecError("deadline: PBS has no deadline for jobs; leave it out on PBS sites")
        if spec.exclude_nodes is not None:
            raise SpecError(
                f"exclude_nodes: {spec.exclude_nodes!r} cannot be asked of PBS, whose qsub "
                "has no host exclusion; leave it out on PBS sites"
            )
        if spec.constraint is not None:
            raise SpecError(
                f"constraint: {spec.constraint!r} is a Slurm node feature request, which PBS "
                "has no equivalent of; leave it out on PBS sites"
            )
        if spec.signal is not None and spec.resources.walltime is None:
            raise SpecError("signal: on PBS the signal is timed from resources.walltime; set it")
        walltime = spec.resources.walltime
        warning = spec.warning_signal  # without a walltime a checkpointed job needs no warning
        return {
            "select": cli.select_statement(spec, self.gpu_type_resource),
            "array": cli.array_range(spec),
            "dependency": cli.dependency_expression(spec.depends_on),
            "priority": cli.priority(spec.nice),
            "begin": cli.begin_time(spec.begin) if spec.begin else None,
            "workdir": ShellCode('"$PBS_O_WORKDIR"') if spec.workdir is None else spec.workdir,
            "stdout": cli.output_word(spec.stdout) if spec.stdout else None,
            "stderr": cli.output_word(spec.stderr) if spec.stderr else None,
            "signal_after": walltime - warning.seconds if warning and walltime else None,
            **checkpoint_context(spec),
        }

    def submit(self, script: str, spec: JobSpec, token: str | None = None) -> str:
        """qsub the script; ``token`` is the HPCBRIDGE_SUBMISSION variable it carries."""
        return self.commands.submit(
            cli.qsub(),
            script,
            token=token,
            parse=parse.parse_submit,
            find_existing=self._find_submitted,
        )

    def max_array_size(self) -> int:
        """How many subjobs one array may have: the server's max_array_size (qstat -B -f)."""
        return parse.parse_max_array_size(self.commands.run(cli.qstat_server_full()).stdout)

    def array_task_id(self, array_id: str, index: int) -> str:
        """Subjob ``index`` of array ``array_id`` ("12[].server"): "12[17].server"."""
        return array_id.replace("[]", f"[{index}]", 1)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One qstat call for every job; an array id stands for the total of its subjobs.

        OpenPBS (23.06) answers ``qstat -f -F json ID1 ID2 ...`` with the first job it finds
        alone (exit 0, nothing on stderr), while the text listing holds every job: several
        ids are asked in text, still in one call; JSON is kept for one job and for listings.
        """
        if not job_ids:
            return {}
        as_json = self.json_output and len(job_ids) == 1
        argv = cli.qstat(job_ids, json=as_json, history=self.job_history)
        result = self.commands.run(argv, env=UTC_ENV, missing_ok=True)
        found: dict[str, JobInfo] = {}
        listed = parse.parse_qstat_json if as_json else parse.parse_qstat_text
        for job_id, attributes in listed(result.stdout).items():
            if not parse.is_array_parent(attributes):
                found[job_id] = parse.job_info(job_id, attributes)
        return with_array_totals(job_ids, found)

    def list_jobs(self) -> dict[str, JobInfo]:
        """Every unfinished job qstat shows, subjobs included, in one call: what a shared
        status snapshot holds (backends/snapshot.py). qstat's -u does not combine with -f,
        so the listing is the server's (its query_other_jobs decides whose); -x is left out,
        as the history of every user's finished jobs would make each snapshot huge."""
        argv = cli.qstat_all(json=self.json_output, history=False)
        result = self.commands.run(argv, env=UTC_ENV)
        return {
            job_id: parse.job_info(job_id, attributes)
            for job_id, attributes in self._parse(result.stdout).items()
            if not parse.is_array_parent(attributes)
        }

    def complete(self, job_ids: Sequence[str], listed: dict[str, JobInfo]) -> dict[str, JobInfo]:
        """The status of ``job_ids`` from ``listed``, and one qstat (with history) for the
        jobs it lacks: those that finished."""
        found = with_array_totals(job_ids, dict(listed))
        gone = [job_id for job_id in job_ids if job_id not in found]
        if gone:
            found.update(self.status(gone))
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        """qdel every job in one call; qdel of a finished job is not an error here."""
        try:
            self.commands.run(cli.job_command("qdel", job_ids))
        except JobNotFound as error:
            if "Job has finished" not in error.stderr or "Unknown Job Id" in error.stderr:
                raise

    def hold(self, job_ids: Sequence[str]) -> None:
        """qhold (a user hold)."""
        self.commands.run(cli.job_command("qhold", job_ids))

    def release(self, job_ids: Sequence[str]) -> None:
        """qrls."""
        self.commands.run(cli.job_command("qrls", job_ids))

    def requeue(self, job_ids: Sequence[str]) -> None:
        """qrerun: needs manager or operator rights on most servers."""
        self.commands.run(cli.job_command("qrerun", job_ids))

    def set_priority(self, job_ids: Sequence[str], *, qos: str | None, nice: int | None) -> None:
        """qalter -p (-1024 lowest, 1023 highest) with the negated nice; PBS has no QOS."""
        if qos is not None:
            raise SpecError(f"priority: PBS has no QOS (asked for {qos!r}); use a nice value")
        priority = cli.priority(nice)
        if priority is not None:
            self.commands.run(cli.qalter_priority(job_ids, priority))

    def describe(self) -> str:
        """The server line of ``qstat -B``."""
        lines = self.commands.run(cli.qstat_server()).stdout.strip().splitlines()
        return lines[-1] if lines else "pbs_server answered"

    def close(self) -> None:
        """Nothing to release: every command goes through the Cluster's transport."""

    def _parse(self, stdout: str) -> dict[str, dict[str, Any]]:
        if self.json_output:
            return parse.parse_qstat_json(stdout)
        return parse.parse_qstat_text(stdout)

    def _find_submitted(self, token: str) -> str | None:
        argv = cli.qstat_all(json=self.json_output, history=self.job_history)
        result = self.commands.run(argv, env=UTC_ENV, missing_ok=True)
        for job_id, attributes in self._parse(result.stdout).items():
            if parse.submission_token(attributes) == token:
                return job_id
        return None
