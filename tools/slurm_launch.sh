#!/usr/bin/env bash
# Runs a tool under slurm with one task per GPU, across as many nodes as GPUS asks for; each task reads its rank
# from slurm's variables (--launcher slurm). The slurm_*.sh scripts call this.
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_launch.sh PARTITION JOB_NAME TOOL [tool arguments...]
# SRUN_ARGS passes extra srun options (e.g. "--time=72:00:00"); PYTHON picks the interpreter
# (default: the one tools/find_python.sh finds: the active environment's, else .venv/bin/python, else python3 / python).
# Preemption (docs/reliability.md): a training run that gets SIGTERM or SIGUSR1 writes a checkpoint at its current step
# and exits with status 75; inside an sbatch job (SLURM_JOB_ID set) this script then runs `scontrol requeue`, and the
# requeued job, running the same command, resumes from that checkpoint. REQUEUE=0 turns the requeue off. In the sbatch
# script, `exec` this line (or the slurm_*.sh one) so that the batch shell is this script, which outlives SIGTERM.
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
PREEMPTED_EXIT_STATUS=75  # cosub_seg.runtime.preemption.PREEMPTED_EXIT_STATUS
# Slurm also sends SIGTERM to the batch shell when it preempts the job: trapped, the shell waits for srun (whose tasks
# are writing their checkpoint) and can requeue afterwards, instead of ending the job at once.
trap 'echo "slurm_launch.sh: SIGTERM received, waiting for the tasks to stop with a checkpoint" >&2' TERM
status=0
# shellcheck disable=SC2086
srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$TOOL" "$@" --launcher slurm || status=$?
if [ "$status" = "$PREEMPTED_EXIT_STATUS" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ] && [ "${REQUEUE:-1}" != 0 ]; then
        echo "slurm_launch.sh: preempted (exit status $status), checkpoint written: requeueing job $SLURM_JOB_ID" >&2
        scontrol requeue "$SLURM_JOB_ID" || echo "slurm_launch.sh: scontrol requeue $SLURM_JOB_ID failed; run the" \
            "same command again to resume" >&2
    else
        echo "slurm_launch.sh: preempted (exit status $status), checkpoint written: run the same command again to" \
            "resume" >&2
    fi
fi
exit "$status"
