"""The ``hpcbridge`` command: one module per verb group (main holds the entry point)."""
