"""Score the usage forecasts and the runtime predictor on an SWF trace, baselines included.

    python benchmarks/forecast_eval.py [TRACE] [--json]

A thin runner of ``hpcbridge forecast evaluate`` (hpcbridge/forecast/evaluate.py holds the
harness, so it ships with the package); TRACE defaults to the development trace, SDSC
DataStar 2004.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hpcbridge.cli.main import main

DEVELOPMENT_TRACE = Path(__file__).parents[1] / ".." / "shared" / "traces"
DEFAULT = DEVELOPMENT_TRACE / "SDSC-DS-2004-2.1-cln.swf.gz"

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not [a for a in arguments if not a.startswith("-")]:
        arguments.insert(0, str(DEFAULT.resolve()))
    main(["forecast", "evaluate", *arguments])
