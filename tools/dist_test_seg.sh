#!/usr/bin/env bash
# Distributed evaluation with torchrun.
#   bash tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [tools/test_seg.py options, e.g. --tta]
# Multi-node and PYTHON as in tools/dist_train_seg.sh.
set -euo pipefail
CONFIG=${1:?usage: tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [options]}
CHECKPOINT=${2:?usage: tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [options]}
NPROC=${3:?usage: tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [options]}
shift 3
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    tools/test_seg.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
