"""Where ledger rows come from: sacct, PBS accounting logs and qstat, the local backend, SWF."""
