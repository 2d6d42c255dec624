#!/bin/bash
#PBS -N hello
#PBS -l select=1:ncpus=1
#PBS -j oe

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${PBS_JOBID}"
export HPCBRIDGE_ARRAY_INDEX="${PBS_ARRAY_INDEX:-}"
# PBS starts jobs in $HOME; run where a Slurm job would, and write output where it would.
cd "$PBS_O_WORKDIR" || exit 1

# job
echo hello
