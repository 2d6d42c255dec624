"""The Jinja environment that turns a JobSpec into a job script, safe by construction.

Every ``{{ expression }}`` in a template passes through :func:`shell_quote` (Jinja's
``finalize`` hook), so a template author cannot forget to quote a value. Only text the user
wrote *as shell code* (``command``, ``setup`` lines, a ``script`` file) is marked
:class:`ShellCode` and goes in verbatim, because running it is the point.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import RenderError, SpecError
from hpcbridge.jobs.units import format_duration, format_hours_clock
from hpcbridge.resources import template_environment

if TYPE_CHECKING:
    import jinja2

    from hpcbridge.jobs.spec import JobSpec


class ShellCode(str):
    """Shell source the user wrote on purpose; the renderer leaves it unquoted."""

    __slots__ = ()


def shell_quote(value: Any) -> str:
    """The one quoting filter: every value that reaches a script goes through here."""
    if isinstance(value, ShellCode):
        return value
    if value is None:
        raise RenderError("a template printed None; guard optional fields with {% if %}")
    return shlex.quote(str(value))


def format_timestamp(moment: datetime) -> str:
    """Schedulers read begin/deadline times in the cluster's local time, without a zone."""
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%Y-%m-%dT%H:%M:%S")


def job_body(spec: JobSpec) -> ShellCode:
    """The user's own commands: ``command`` as written, or the text of ``script``."""
    if spec.command is not None:
        return ShellCode(spec.command.rstrip("\n"))
    assert spec.script is not None  # guaranteed by JobSpec's command-xor-script validator
    try:
        text = Path(spec.script).read_text()
    except OSError as exc:
        raise SpecError(f"script: cannot read {str(spec.script)!r}: {exc.strerror}") from exc
    first_line = text.partition("\n")[0]
    if first_line.startswith("#!") and not first_line.rstrip().endswith(("sh", "bash")):
        raise SpecError(
            f"script: {str(spec.script)!r} starts with {first_line!r}; only shell scripts can be "
            f"wrapped, so run it from command instead (e.g. command: ./{Path(spec.script).name})"
        )
    return ShellCode(text.rstrip("\n"))


class Renderer:
    """Finds templates in a site's override folder first, then in the packaged ones. With an
    override folder everything renders in Jinja's sandbox: a site's templates can extend or
    include the packaged ones, so both run in the environment the site's code runs in."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self.override_dir = override_dir

    @cached_property
    def environment(self) -> jinja2.Environment:
        """Made on the first render: a Cluster that only polls never loads Jinja."""
        environment = template_environment(
            [self.override_dir] if self.override_dir else [],
            finalize=shell_quote,
            sandboxed=self.override_dir is not None,
        )
        environment.filters.update(
            duration=format_duration, hours_clock=format_hours_clock, timestamp=format_timestamp
        )
        return environment

    def render(self, template_name: str, spec: JobSpec, **context: Any) -> str:
        """Render ``template_name`` for ``spec``; extra context comes from the backend."""
        import jinja2

        try:
            template = self.environment.get_template(template_name)
            return template.render(
                job=spec,
                resources=spec.resources,
                body=job_body(spec),
                setup=shell_lines(spec.setup),
                **context,
            )
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {template_name} failed: {exc}") from exc

    def render_text(self, template_name: str, **context: Any) -> str:
        """Render a template that is not a job script (a sweep's parameters file)."""
        import jinja2

        try:
            return self.environment.get_template(template_name).render(**context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {template_name} failed: {exc}") from exc


def shell_lines(lines: Iterable[str]) -> list[ShellCode]:
    """Mark each line as deliberate shell code."""
    return [ShellCode(line) for line in lines]
