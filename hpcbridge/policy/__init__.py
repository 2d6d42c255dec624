"""Policy above the cluster facade: budgets checked at submit and written into Slurm."""
