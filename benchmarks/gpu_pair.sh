#!/usr/bin/env bash
# Two GPU drivers at once on a two-GPU machine (nvidia-h200-x2), so that one session's 30 minutes of
# device time cover two benchmarks: a shared setup first, then one lane per GPU.
#
#   bash benchmarks/gpu_pair.sh DEADLINE "SETUP" "LANE0" "LANE1"
#
# Each of SETUP, LANE0 and LANE1 is one or more driver calls joined by " + ", each a driver in
# benchmarks/ and its stages, e.g. "sweep_speed.py sweep? + eval_check.py evalcache? evaltrain?".
# Empty: nothing. SETUP runs first (both GPUs visible); then LANE0 runs with CUDA_VISIBLE_DEVICES=0
# and LANE1 with CUDA_VISIBLE_DEVICES=1, side by side. Every driver call gets what is left of
# DEADLINE (seconds from this script's start) and its own --out folder under $OUT; the drivers share
# their work folder (/tmp/fpe2e), so their `STAGE?` skipping sees each other's outputs. At the end
# everything under $OUT is packed into $OUT/pair.tgz (the device returns at most 8 files) and the
# end of each driver's console is printed.
#
# The two lanes share the host (CPU, page cache, memory bandwidth). Figures measured this way say so:
# use it for work whose result is a ratio of two paths that both ran under the same sharing, or a
# check, not for a figure that must be taken on an otherwise idle machine.
#
# PAIR_ARGS adds options to every driver call (locally: PAIR_ARGS="--local-fake --root /tmp/x").
set -uo pipefail
set -f # stages end in "?": never glob them
deadline=$1 setup=$2 lane0=$3 lane1=$4
out=${OUT:?set OUT to the results folder}
here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS

lane() { # name, visible GPUs, calls joined by " + "
    local name=$1 gpus=$2 calls=$3 n=0 call left
    [ -n "$calls" ] || return 0
    while [ -n "$calls" ]; do
        call=${calls%% + *}
        [ "$call" = "$calls" ] && calls="" || calls=${calls#* + }
        n=$((n + 1))
        left=$((deadline - (SECONDS - start)))
        mkdir -p "$out/$name-$n"
        echo "=== $name-$n (GPU $gpus, ${left} s left): $call"
        # shellcheck disable=SC2086  # a call is a driver and its stages: split on purpose
        CUDA_VISIBLE_DEVICES=$gpus PYTHONUNBUFFERED=1 python3 "$here"/$call --deadline "$left" \
            --out "$out/$name-$n" ${PAIR_ARGS:-} >"$out/$name-$n/console.log" 2>&1
        echo "=== $name-$n exited $? after $((SECONDS - start)) s"
    done
}

lane setup 0,1 "$setup"
lane gpu0 0 "$lane0" &
lane gpu1 1 "$lane1" &
wait
set +f

for console in "$out"/*/console.log; do
    echo "----- ${console#"$out"/}"
    tail -n 14 "$console"
done
(cd "$out" && tar -czf pair.tgz -- */ && rm -rf -- */)
ls -l "$out"
