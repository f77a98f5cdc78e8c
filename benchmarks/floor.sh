#!/usr/bin/env bash
# The floor: a DAG submitted by hand with plain sbatch and native afterok dependencies, then
# squeue polled until none of its jobs is left. Nothing can run the same DAG on the same Slurm
# faster, so the reconciler's times are reported as ratios to this one's.
#
#   floor.sh chain STEPS           STEPS jobs of `sleep 1`, each after the one before
#   floor.sh fan WIDTH             one `true`, an array of WIDTH `true` after it, one `true` after that
#   floor.sh array WIDTH           an array of WIDTH `true` alone
#
# An array wider than the cluster's MaxArraySize is cut as the reconciler cuts it: array jobs of at
# most MaxArraySize elements, each with ids 0..n-1 (the reconciler passes each chunk's first index
# as an offset; `true` needs none). Uses SLURM_CONF from the environment; prints nothing but errors.
set -euo pipefail
shape=$1
size=$2
name="floor-$$-$RANDOM"
common=(--parsable --job-name="$name" --partition=debug --time=00:05:00 --mem=20M --output=/dev/null
        --chdir=/tmp)

max_array=$(scontrol show config | awk '$1 == "MaxArraySize" {print $3}')
max_array=${max_array:-1001}

# Submits one job; the rest of the arguments go to sbatch. Prints its job id.
job() {
    local script=$1
    shift
    sbatch "${common[@]}" "$@" --wrap="$script" | cut -d';' -f1
}

# Submits WIDTH elements of `true` as array jobs of at most MaxArraySize; prints their ids joined by ":".
array() {
    local width=$1 start ids=()
    shift
    for ((start = 0; start < width; start += max_array)); do
        local count=$((width - start < max_array ? width - start : max_array))
        ids+=("$(job true --array="0-$((count - 1))" "$@")")
    done
    local IFS=:
    echo "${ids[*]}"
}

case "$shape" in
    chain)
        previous=$(job "sleep 1")
        for ((step = 1; step < size; step++)); do
            previous=$(job "sleep 1" --dependency="afterok:$previous")
        done
        ;;
    fan)
        first=$(job true)
        middle=$(array "$size" --dependency="afterok:$first")
        job true --dependency="afterok:$middle" >/dev/null
        ;;
    array)
        array "$size" >/dev/null
        ;;
    *)
        echo "unknown shape $shape (chain, fan or array)" >&2
        exit 2
        ;;
esac

# squeue lists pending, running and completing jobs only: empty means every one of them ended.
while [ -n "$(squeue --me --noheader --name="$name" --format=%i)" ]; do
    sleep 0.1
done
