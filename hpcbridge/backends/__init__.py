"""Backends translate the job model to one scheduler's commands and back."""
