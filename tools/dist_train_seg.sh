#!/usr/bin/env bash
# Distributed segmentation fine-tuning with torchrun (one process per GPU; gloo on machines without GPUs).
#   bash tools/dist_train_seg.sh CONFIG NPROC [tools/train_seg.py options...]
# Multi-node: on every node, with the same MASTER_ADDR / PORT and NNODES and the node's NODE_RANK:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train_seg.sh CONFIG 8
# PYTHON picks the interpreter (default: python).
set -euo pipefail
CONFIG=${1:?usage: tools/dist_train_seg.sh CONFIG NPROC [options]}
NPROC=${2:?usage: tools/dist_train_seg.sh CONFIG NPROC [options]}
shift 2
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    tools/train_seg.py "$CONFIG" --launcher pytorch "$@"
