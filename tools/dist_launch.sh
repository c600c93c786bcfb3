#!/usr/bin/env bash
# Runs a tool with torchrun, one process per GPU (gloo processes on a machine without GPUs). The dist_*.sh scripts
# call this. Multi-node: on every node, with the same MASTER_ADDR, PORT and NNODES and the node's NODE_RANK, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train_seg.sh CONFIG 8
# On one node (NNODES unset or 1) the processes meet on 127.0.0.1 and MASTER_ADDR is not read: a MASTER_ADDR left
# in the shell by a cluster job (a head node's name this machine may not reach) would make them wait 15 minutes for
# torchrun's store and fail.
# PYTHON picks the interpreter (default: the one tools/find_python.sh finds: the active environment's, else the
# project's .venv/bin/python, else python3 / python).
#   bash tools/dist_launch.sh NPROC TOOL [tool arguments...]
set -euo pipefail
NPROC=${1:?usage: tools/dist_launch.sh NPROC TOOL [arguments]}
TOOL=${2:?usage: tools/dist_launch.sh NPROC TOOL [arguments]}
shift 2
cd "$(dirname "$0")/.."
PYTHON=$(bash tools/find_python.sh)
if [ "${NNODES:-1}" = 1 ]; then
    ADDR=127.0.0.1
else
    ADDR=${MASTER_ADDR:?"NNODES=$NNODES needs MASTER_ADDR: the address of the node with NODE_RANK=0, the same on every node"}
fi
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="$ADDR" \
    --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    "$TOOL" "$@" --launcher pytorch
