"""The embedded local backend: jobs run as processes on this machine, with a scheduler's states."""
