#!/usr/bin/env bash
# Segmentation evaluation under slurm: one task per GPU across as many nodes as GPUS asks for.
#   GPUS=8 bash tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test_seg.py options...]
# SRUN_ARGS passes extra srun options (e.g. "--time=72:00:00"). Each task reads its rank from slurm's variables.
set -euo pipefail
PARTITION=${1:?usage: tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]}
JOB_NAME=${2:?usage: tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]}
CONFIG=${3:?usage: tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]}
CHECKPOINT=${4:?usage: tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]}
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-10}
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    python -u tools/test_seg.py "$CONFIG" "$CHECKPOINT" --launcher slurm "$@"
