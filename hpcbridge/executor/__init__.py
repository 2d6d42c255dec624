"""Python functions as jobs: ``Cluster.executor()`` and the worker that runs them.

Only Resubmission is imported here, the one name a function's own code needs on the compute
node (a checkpointable function's ``checkpoint`` returns one); its module imports nothing.
The rest loads when used, so the worker and ``import hpcbridge`` stay cheap.
"""

from hpcbridge.executor.resubmission import Resubmission

__all__ = ["Resubmission"]
