#!/usr/bin/env bash
# Distributed training over torchrun: tools/dist_train.sh CONFIG NGPUS [args]
# NGPUS processes per node (CPU processes when torch has no CUDA: gloo).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT from the environment; a
# node waits RDZV_TIMEOUT seconds (default 600) for the others, then fails.
# MAX_RESTARTS (default 0): how often torchrun restarts all workers when one
# dies; tools/train.py then resumes from the work dir's last checkpoint.
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
MAX_RESTARTS=${MAX_RESTARTS:-0}
RDZV_TIMEOUT=${RDZV_TIMEOUT:-600}

source "$(dirname "$0")/python_env.sh"
if [ "$NNODES" -gt 1 ]; then
    echo "dist_train.sh: node $NODE_RANK of $NNODES, meeting the others at" \
        "$MASTER_ADDR:$PORT (waiting at most ${RDZV_TIMEOUT}s)" >&2
fi
# torchrun, with a failed meeting of the nodes (e.g. a node that never
# came, RDZV_TIMEOUT) as one line instead of the launcher's traceback
exec "$PYTHON" -c '
import sys
from torch.distributed import DistError
from torch.distributed.run import main
try:
    main()
except DistError as e:
    sys.exit(f"error: torchrun: {type(e).__name__}: {e}")
' \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    --max_restarts="$MAX_RESTARTS" \
    --rdzv_conf="timeout=$RDZV_TIMEOUT" \
    "$TOOLS_DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
