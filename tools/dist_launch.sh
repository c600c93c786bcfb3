#!/usr/bin/env bash
# Runs a tool with torchrun, one process per GPU (gloo processes on a machine without GPUs). The dist_*.sh scripts
# call this. Multi-node: on every node, with the same MASTER_ADDR, PORT and NNODES and the node's NODE_RANK, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train_seg.sh CONFIG 8
# PYTHON picks the interpreter (default: the one tools/find_python.sh finds: the active environment's, else the
# project's .venv/bin/python, else python3 / python).
#   bash tools/dist_launch.sh NPROC TOOL [tool arguments...]
set -euo pipefail
NPROC=${1:?usage: tools/dist_launch.sh NPROC TOOL [arguments]}
TOOL=${2:?usage: tools/dist_launch.sh NPROC TOOL [arguments]}
shift 2
cd "$(dirname "$0")/.."
PYTHON=$(bash tools/find_python.sh)
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    "$TOOL" "$@" --launcher pytorch
