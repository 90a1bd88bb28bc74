#!/usr/bin/env bash
# Training on a Slurm cluster, as mmseg's tools/slurm_train.sh:
#   [GPUS=4] [GPUS_PER_NODE=4] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args...]
# GPUS_PER_NODE=0 on CPU-only nodes (gloo, CPUSyncBatchNorm); the rest of
# the variables: tools/slurm_srun.sh.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [train.py args...]" >&2
    exit 2
fi
source "$(dirname "$0")/slurm_srun.sh"
slurm_srun "$1" "$2" train.py "${@:3}"
