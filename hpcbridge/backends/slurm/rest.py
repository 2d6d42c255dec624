"""Slurm through slurmrestd (site option ``slurm.driver: rest``).

The calls made most often go over one kept-alive HTTP connection instead of a process
each: submit, the status of every tracked job in one GET, cancel, hold, release and
priority moves. What slurmrestd 22.05 (API v0.0.38) cannot do right goes through the
command-line tools on the site's transport, as the CLI driver does it:

- requeue: the API has no endpoint for it (``scontrol requeue``);
- ended jobs no longer in slurmctld's memory: its accounting endpoint reports exit code 0
  for a job that exited 3 (captured in tests/data/slurm/rest/), so ``sacct`` is asked;
- a job whose script needs a directive the API rejects (``--signal=B:...``, which the
  checkpoint wrapper uses) is submitted with ``sbatch``, and the log says why;
- the site's own checks (limits, MaxArraySize, ``--test-only``) stay on the CLI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hpcbridge.backends.slurm import rest_api
from hpcbridge.backends.slurm.backend import ERRORS, SlurmBackend
from hpcbridge.errors import JobNotFound, SchedulerError, SchedulerUnavailable
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo
from hpcbridge.site import SlurmOptions
from hpcbridge.transports.base import CommandResult, Transport

log = logging.getLogger(__name__)


class SlurmRestBackend(SlurmBackend):
    """SlurmBackend whose frequent calls go to slurmrestd over HTTP."""

    def __init__(
        self,
        transport: Transport,
        options: SlurmOptions,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(transport, attempts=attempts, backoff=backoff)
        self.options = options
        self.client = httpx.Client(base_url=options.rest_url, timeout=options.rest_timeout)
        self._token: str | None = os.environ.get(options.token_env) or None
        self._token_renewable = self._token is None
        # A token made here is renewed this long before it expires.
        self._renew_before = timedelta(seconds=min(60, options.token_lifespan / 2))
        # Jobs submitted with sbatch because the API could not carry their script.
        self.cli_submissions = 0

    def close(self) -> None:
        """Close the HTTP connection."""
        self.client.close()

    def submit(self, script: str, spec: JobSpec, token: str | None = None) -> str:
        """POST the script with its directives as job fields; sbatch if the API cannot."""
        try:
            body = rest_api.job_description(script, environment=os.environ, cwd=os.getcwd())
        except rest_api.NotExpressible as reason:
            log.info("job %s goes to sbatch: %s", spec.name, reason)
            self.cli_submissions += 1
            return super().submit(script, spec, token)

        def send() -> str:
            return str(self._send("POST", rest_api.SUBMIT, body, submitting=True)["job_id"])

        return self.commands.submit_once(send, token=token, find_existing=self._find_by_comment)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One GET of slurmctld's jobs; sacct for those it no longer holds."""
        if not job_ids:
            return {}
        wanted = set(job_ids)
        # GET /jobs answers with every job slurmctld holds: keep the tracked ones (and the
        # tasks of tracked arrays) before building anything from them.
        tracked = [record for record in self._jobs() if rest_api.names_of(record) & wanted]
        listed = {info.job_id: info for info in rest_api.parse_jobs(tracked)}
        return self.complete(job_ids, {k: v for k, v in listed.items() if _asked(v, wanted)})

    def list_jobs(self) -> dict[str, JobInfo]:
        """Every job of the token's user that slurmctld still holds (a status snapshot)."""
        user, _ = rest_api.token_claims(self._current_token())
        mine = [record for record in self._jobs() if record.get("user_name") == user]
        return {info.job_id: info for info in rest_api.parse_jobs(mine)}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """DELETE each job; the known ones are cancelled even if some are not."""
        unknown = []
        for job_id in job_ids:
            try:
                self._request("DELETE", rest_api.job_path(job_id))
            except JobNotFound:
                unknown.append(job_id)
        if unknown:
            raise JobNotFound(f"slurmrestd: no such job ({' '.join(unknown)})")

    def hold(self, job_ids: Sequence[str]) -> None:
        """Update each job with hold=true (priority 0, as ``scontrol hold``)."""
        self._update(job_ids, {"hold": True})

    def release(self, job_ids: Sequence[str]) -> None:
        """Update each job with hold=false."""
        self._update(job_ids, {"hold": False})

    def set_priority(self, job_ids: Sequence[str], *, qos: str | None, nice: int | None) -> None:
        """Update each job's QOS and/or nice value."""
        fields = {key: value for key, value in (("qos", qos), ("nice", nice)) if value is not None}
        if fields:
            self._update(job_ids, fields)

    def describe(self) -> str:
        """What slurmrestd's ping says: its API version, Slurm's release, the controller."""
        payload = self._request("GET", rest_api.PING)
        release = payload.get("meta", {}).get("Slurm", {}).get("release", "?")
        pings = ", ".join(f"{p['hostname']} {p['ping']}" for p in payload.get("pings", []))
        return f"slurmrestd {rest_api.VERSION} at {self.options.rest_url}: Slurm {release}; {pings}"

    def _update(self, job_ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        for job_id in job_ids:
            self._request("POST", rest_api.job_path(job_id), fields)

    def _jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self._request("GET", rest_api.JOBS).get("jobs", [])
        return jobs

    def _find_by_comment(self, token: str) -> str | None:
        comments = rest_api.comments(self._jobs())
        return next((job_id for job_id, comment in comments.items() if comment == token), None)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """An idempotent request, retried while slurmrestd or slurmctld is unavailable."""
        for attempt in self.commands.retrying():
            with attempt:
                return self._send(method, path, body)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        *,
        submitting: bool = False,
    ) -> dict[str, Any]:
        response = self._http(method, path, body)
        try:
            payload: dict[str, Any] = response.json()
        except ValueError as exc:
            raise SchedulerError(
                f"slurmrestd answered {method} {path} with HTTP {response.status_code} and "
                f"no JSON: {response.text[:200]!r}"
            ) from exc
        if response.is_success:
            return payload
        # The same words as the CLI's errors, so the same table classifies them.
        result = CommandResult(
            argv=("slurmrestd", f"{method} {path}"),
            returncode=response.status_code,
            stdout="",
            stderr=rest_api.error_text(payload) or f"HTTP {response.status_code}",
        )
        raise ERRORS.refusal(result) if submitting else ERRORS.classify(result)

    def _http(self, method: str, path: str, body: Mapping[str, Any] | None) -> httpx.Response:
        token = self._current_token()
        user, _ = rest_api.token_claims(token)
        headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}
        try:
            return self.client.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise SchedulerUnavailable(
                f"slurmrestd at {self.options.rest_url} is unreachable: {exc}"
            ) from exc

    def _current_token(self) -> str:
        """The JWT to send: the site's, or one made with ``scontrol token`` and renewed
        before it expires."""
        now = datetime.now(UTC)
        if self._token is not None:
            _, expires = rest_api.token_claims(self._token)
            if expires is None or expires - now > self._renew_before:
                return self._token
            if not self._token_renewable:
                raise SchedulerError(
                    f"the Slurm JWT in ${self.options.token_env} expired at "
                    f"{expires:%Y-%m-%d %H:%M:%S} UTC: get a new one (scontrol token)"
                )
        argv = ["scontrol", "token", f"lifespan={self.options.token_lifespan}"]
        answer = self.commands.run(argv).stdout.strip()
        token = answer.partition("SLURM_JWT=")[2]
        if not token:
            raise SchedulerError(f"scontrol token printed {answer!r}, not SLURM_JWT=...")
        self._token = token
        return token


def _asked(info: JobInfo, wanted: set[str]) -> bool:
    return info.job_id in wanted or info.array_job_id in wanted
