#!/usr/bin/env bash
# Testing on a Slurm cluster, as mmseg's tools/slurm_test.sh:
#   [GPUS=4] [GPUS_PER_NODE=4] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# As tools/slurm_train.sh (GPUS_PER_NODE=0 on CPU-only nodes).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
TASKS_PER_NODE=${TASKS_PER_NODE:-$(( GPUS_PER_NODE > 0 ? GPUS_PER_NODE : GPUS ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=()
[ "$GPUS_PER_NODE" -gt 0 ] && GRES=(--gres="gpu:$GPUS_PER_NODE")

source "$(dirname "$0")/python_env.sh"
# shellcheck disable=SC2086  # SRUN_ARGS holds several words on purpose
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${GRES[@]}" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$TASKS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher slurm "${@:5}"
