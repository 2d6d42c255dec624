"""The accounting ledger: every job attempt a cluster ran and what it cost, kept in SQLAlchemy.

Nothing here is imported by ``hpcbridge --help``: SQLAlchemy loads only when a ledger command
or ``hpcbridge.ledger`` itself is used.
"""
