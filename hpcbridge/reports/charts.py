"""What every hpcbridge chart shares: a matplotlib Figure, and reproducible PNG or SVG from it.

matplotlib is the ``charts`` extra, so it is imported only inside these functions, when a
picture is asked for; importing this module loads nothing heavy, and a missing extra is a
ConfigError that says how to install it. Figures are drawn on the Agg canvas, never through
pyplot: no global state and no display, so charts work on a login node or from cron. SVG keeps
its text as text (small, searchable) and is reproducible byte for byte (fixed hash salt, no
date), so a chart can be committed, compared, or embedded in a page that is.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(size: tuple[float, float], *, purpose: str, instead: str = "") -> Figure:
    """A constrained-layout Figure of ``size`` inches on an Agg canvas (100 dpi).

    ``purpose`` names what needs matplotlib and ``instead`` an alternative that does not, for
    the ConfigError raised when the ``charts`` extra is missing.
    """
    try:
        # The package first: its submodules may be loaded while it is itself unimportable.
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        alternative = f", or {instead}" if instead else ""
        raise ConfigError(
            f"matplotlib is needed for {purpose} but could not be imported ({exc}): "
            f"pip install 'hpcbridge[charts]'{alternative}"
        ) from exc
    result = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(result)
    return result


def save(figure: Figure, fmt: str, *, salt: str = "hpcbridge") -> bytes:
    """The figure as ``png`` or ``svg`` bytes; SVG with text as text, ids salted with ``salt``
    and no date, so the same chart gives the same bytes."""
    return _save(figure, fmt, salt, {"Date": None} if fmt == "svg" else None)


def inline_svg(figure: Figure, *, salt: str) -> str:
    """The figure as an ``<svg>`` element to write into an HTML page: no XML prolog or DOCTYPE
    (which would point at the W3C's site) and no metadata. Give each chart in one page its own
    ``salt`` so that their element ids do not clash."""
    bare = {"Date": None, "Creator": None, "Format": None, "Type": None}
    text = _save(figure, "svg", salt, bare).decode()
    return text[text.index("<svg") :]


def _save(figure: Figure, fmt: str, salt: str, metadata: dict[str, None] | None) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()
