"""numpy, the optional ``forecast`` extra, imported in one place with an error that says how
to install it; the forecast modules take ``np`` and the array type from here."""

from __future__ import annotations

from hpcbridge.errors import ConfigError

try:
    import numpy as np
    from numpy.typing import NDArray
except ModuleNotFoundError as exc:
    raise ConfigError(f"forecasts need numpy: pip install 'hpcbridge[forecast]' ({exc})") from exc

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

__all__ = ["Bools", "Floats", "Ints", "np"]
