"""Where the top-level data folders (templates, site_configs, accounting) are at run time.

A wheel carries them inside the package as ``hpcbridge/_data/<folder>``; an editable install or
a source checkout has them beside the package. Looking in both lets every install find them
from any working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(folder: str) -> Path:
    """The installed copy of a top-level data folder such as ``templates``."""
    for candidate in (_PACKAGE_DIR / "_data" / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hpcbridge data folder {folder!r} is missing from this install")
