#!/bin/bash
#SBATCH --job-name=sim-step_2
#SBATCH --partition=gpu
#SBATCH --account=physics
#SBATCH --qos=long
#SBATCH --nodes=2
#SBATCH --ntasks=8
#SBATCH --cpus-per-task=4
#SBATCH --mem=16384M
#SBATCH --gres=gpu:a100:2
#SBATCH --time=1-12:00:00
#SBATCH --array=1-100%10
#SBATCH --dependency=afterok:101,afterany:102,afternotok:103_4,singleton
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --begin=2030-01-01T08:00:00
#SBATCH --deadline=2030-01-03T08:00:00
#SBATCH --nice=50
#SBATCH --chdir=/scratch/physics/run1
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --error=logs/%x-%A_%a.err

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${SLURM_JOB_ID}"
export HPCBRIDGE_ARRAY_INDEX="${SLURM_ARRAY_TASK_ID:-}"
module load gcc/12.2
module load openmpi/4.1
export OMP_NUM_THREADS=4
export GREETING='it'"'"'s a "test" $(not run)'

# setup
source venv/bin/activate
set -o pipefail

# job
python train.py --epochs 3 --out "$HOME/results"
