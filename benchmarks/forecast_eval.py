"""Score the usage forecasts and the runtime predictor on SWF traces, baselines included.

    python benchmarks/forecast_eval.py [TRACE ...] [--json]

A thin runner of ``hpcbridge forecast evaluate`` (hpcbridge/forecast/evaluate.py holds the
harness, so it ships with the package); without a TRACE it scores the three development
traces (SDSC DataStar 2004, Sandia Ross 2001, KTH SP2 1996), each on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hpcbridge.cli.main import main

DEVELOPMENT_TRACES = Path(__file__).parents[1] / ".." / "shared" / "traces"
DEFAULTS = [
    DEVELOPMENT_TRACES / name
    for name in (
        "SDSC-DS-2004-2.1-cln.swf.gz",
        "Sandia-Ross-2001-1.1-cln.swf.gz",
        "KTH-SP2-1996-2.1-cln.swf.gz",
    )
]

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not [a for a in arguments if not a.startswith("-")]:
        arguments[:0] = [str(path.resolve()) for path in DEFAULTS]
    main(["forecast", "evaluate", *arguments])
