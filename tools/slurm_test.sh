#!/usr/bin/env bash
# Testing on a Slurm cluster, as mmseg's tools/slurm_test.sh:
#   [GPUS=4] [GPUS_PER_NODE=4] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# GPUS_PER_NODE=0 on CPU-only nodes; the rest: tools/slurm_srun.sh.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi
source "$(dirname "$0")/slurm_srun.sh"
slurm_srun "$1" "$2" test.py "${@:3}"
