"""Where the top-level data folders (templates, site_configs, accounting) are at run time.

A wheel carries them inside the package as ``hpcbridge/_data/<folder>``; an editable install or
a source checkout has them beside the package. Looking in both lets every install find them
from any working directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(folder: str) -> Path:
    """The installed copy of a top-level data folder such as ``templates``."""
    for candidate in (_PACKAGE_DIR / "_data" / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hpcbridge data folder {folder!r} is missing from this install")


def template_environment(
    search_path: Sequence[str | Path] = (),
    *,
    finalize: Callable[[Any], Any] | None = None,
    autoescape: bool = False,
    sandboxed: bool = False,
) -> jinja2.Environment:
    """Jinja as every hpcbridge template is written for: a missing value is an error, not a
    blank (StrictUndefined), block tags leave no blank lines, and ``search_path`` (a site's
    overrides) is searched before the packaged templates.

    ``sandboxed`` renders in Jinja's SandboxedEnvironment, for templates hpcbridge did not
    write (a site's overrides): they may shape a script but not reach Python's internals
    (``cycler.__init__.__globals__``...), which plain Jinja lets any template do."""
    import jinja2
    import jinja2.sandbox

    environment = jinja2.sandbox.SandboxedEnvironment if sandboxed else jinja2.Environment
    return environment(
        loader=jinja2.FileSystemLoader([*map(str, search_path), str(data_dir("templates"))]),
        undefined=jinja2.StrictUndefined,
        finalize=finalize,
        autoescape=autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # compiled once per process: no stat of each template per render
    )
