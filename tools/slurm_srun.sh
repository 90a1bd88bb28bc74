# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: run one of the
# tools on a Slurm partition, as mmseg's slurm scripts do:
#   slurm_srun PARTITION JOB_NAME TOOL [tool args...]
# One task per GPU: GPUS tasks in all (default 4), GPUS_PER_NODE per node
# (default 4; 0 on CPU-only nodes asks for no GPU and the tasks run with gloo
# and CPUSyncBatchNorm, TASKS_PER_NODE then defaults to GPUS), CPUS_PER_TASK
# (default 5), SRUN_ARGS added as they are. The master is the job's first
# node (or MASTER_ADDR), its port MASTER_PORT (default 29500).
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"

slurm_srun() {
    local partition=$1 job_name=$2 tool=$3
    shift 3
    local gpus=${GPUS:-4}
    local gpus_per_node=${GPUS_PER_NODE:-4}
    local tasks_per_node=${TASKS_PER_NODE:-$(( gpus_per_node > 0 ? gpus_per_node : gpus ))}
    local gres=()
    [ "$gpus_per_node" -gt 0 ] && gres=(--gres="gpu:$gpus_per_node")
    # shellcheck disable=SC2086  # SRUN_ARGS holds several words on purpose
    exec srun -p "$partition" \
        --job-name="$job_name" \
        "${gres[@]}" \
        --ntasks="$gpus" \
        --ntasks-per-node="$tasks_per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$TOOLS_DIR/$tool" "$@" --launcher slurm
}
