#!/bin/bash
#PBS -N train
#PBS -q gpu
#PBS -l select=2:ncpus=1:ngpus=2:gpu_model=a100
#PBS -l walltime=04:00:00
#PBS -j oe

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${PBS_JOBID}"
export HPCBRIDGE_ARRAY_INDEX="${PBS_ARRAY_INDEX:-}"
# PBS starts jobs in $HOME; run where a Slurm job would, and write output where it would.
cd "$PBS_O_WORKDIR" || exit 1

# job
python train.py
