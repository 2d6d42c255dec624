#!/bin/bash
#PBS -N sim-step_2
#PBS -q gpu
#PBS -A physics
#PBS -l select=2:ncpus=16:mpiprocs=4:mem=16384mb:ngpus=1:gpu_model=a100
#PBS -l walltime=36:00:00
#PBS -J 1-100:2%10
#PBS -W depend=afterok:101.srv,afterany:102[].srv,afternotok:103[4].srv
#PBS -r y
#PBS -a 203001010800.00
#PBS -p -50
#PBS -j oe
#PBS -o /dev/null

# Portable names for the scheduler's job variables.
export HPCBRIDGE_JOB_ID="${PBS_JOBID}"
export HPCBRIDGE_ARRAY_INDEX="${PBS_ARRAY_INDEX:-}"
# PBS starts jobs in $HOME; run where a Slurm job would, and write output where it would.
cd /scratch/physics/run1 || exit 1
exec >logs/"${PBS_JOBNAME}"-"${PBS_ARRAY_ID}"_"${PBS_ARRAY_INDEX}".out
exec 2>logs/"${PBS_JOBNAME}"-"${PBS_ARRAY_ID}"_"${PBS_ARRAY_INDEX}".err
# PBS sends no warning before the walltime; this timer sends the requested signal.
( sleep 129300 && kill -s USR1 $$ ) &
hpcbridge_signal_timer=$!
trap 'kill "$hpcbridge_signal_timer" 2>/dev/null' EXIT
module load gcc/12.2
module load openmpi/4.1
export OMP_NUM_THREADS=4
export GREETING='it'"'"'s a "test" $(not run)'

# setup
source venv/bin/activate
set -o pipefail

# job
python train.py --epochs 3 --out "$HOME/results"
