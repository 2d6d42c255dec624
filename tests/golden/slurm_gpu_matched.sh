#!/bin/bash
#SBATCH --job-name=train
#SBATCH --partition=gpu
#SBATCH --nodes=2
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --gres=gpu:a100:4
#SBATCH --constraint=nvlink
#SBATCH --time=04:00:00

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${SLURM_JOB_ID}"
export HPCBRIDGE_ARRAY_INDEX="${SLURM_ARRAY_TASK_ID:-}"

# job
python train.py
