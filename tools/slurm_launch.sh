#!/usr/bin/env bash
# Runs a tool under slurm with one task per GPU, across as many nodes as GPUS asks for; each task reads its rank
# from slurm's variables (--launcher slurm). The slurm_*.sh scripts call this.
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_launch.sh PARTITION JOB_NAME TOOL [tool arguments...]
# SRUN_ARGS passes extra srun options (e.g. "--time=72:00:00"); PYTHON picks the interpreter
# (default: the one tools/find_python.sh finds: the active environment's, else .venv/bin/python, else python3 / python).
set -euo pipefail
PARTITION=${1:?usage: tools/slurm_launch.sh PARTITION JOB_NAME TOOL [arguments]}
JOB_NAME=${2:?usage: tools/slurm_launch.sh PARTITION JOB_NAME TOOL [arguments]}
TOOL=${3:?usage: tools/slurm_launch.sh PARTITION JOB_NAME TOOL [arguments]}
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-10}
cd "$(dirname "$0")/.."
PYTHON=$(bash tools/find_python.sh)
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$TOOL" "$@" --launcher slurm
