#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${SLURM_JOB_ID}"
export HPCBRIDGE_ARRAY_INDEX="${SLURM_ARRAY_TASK_ID:-}"

# job
echo hello
