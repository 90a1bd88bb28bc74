#!/usr/bin/env bash
# Distributed training over torchrun: tools/dist_train.sh CONFIG NGPUS [args]
# NGPUS processes per node (CPU processes when torch has no CUDA: gloo).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT from the environment.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NGPUS [train.py args...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

source "$(dirname "$0")/python_env.sh"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
