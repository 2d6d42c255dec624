"""Forecasts from the ledger: monthly usage, budget burn-down, run time, walltime advice,
and the evaluation harness that scores them on traces."""
