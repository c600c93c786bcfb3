#!/usr/bin/env bash
# Distributed pretraining with torchrun: one process per GPU (or per CPU worker on a machine without GPUs, gloo).
#   bash tools/dist_pretrain.sh CONFIG NPROC [tools/pretrain.py options...]
# PYTHON picks the interpreter (default: python). Multi-node: run it on every node with the same MASTER_ADDR / PORT, NNODES and each node's NODE_RANK, e.g.
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_pretrain.sh CONFIG 8
set -euo pipefail
CONFIG=${1:?usage: tools/dist_pretrain.sh CONFIG NPROC [options]}
NPROC=${2:?usage: tools/dist_pretrain.sh CONFIG NPROC [options]}
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    tools/pretrain.py "$CONFIG" --launcher pytorch "$@"
