"""Python functions as jobs: ``Cluster.executor()`` and the worker that runs them.

Nothing is imported here: the worker (``python -m hpcbridge.executor.run_task``) loads only
what it needs on a compute node, and ``import hpcbridge`` stays cheap.
"""
