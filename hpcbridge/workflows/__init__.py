"""Workflows on the scheduler: DAG model, submission/status/resume, store, segments, drawings."""
