"""The job model and how it becomes a script: spec, state, units, rendering, checkpoint wrapper."""
