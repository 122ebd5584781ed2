#!/bin/sh
# budget.sh: training steps under a memory budget (compiled mode, recompute
# planner auto) against the same steps without one, in the same run: the
# median step time, the step's planned peak, the measured peak and what
# was recomputed. The loss after the timed steps is printed to show the
# budgeted runs train the same numbers.
# usage: bench/budget.sh PATH/TO/bench_step [model batch] (default: gpt 8)
set -u
STEP=${1:?usage: bench/budget.sh PATH/TO/bench_step [model batch]}
MODEL=${2:-gpt}
BATCH=${3:-8}
ROUNDS=5
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([-0-9.e+a-z]*\).*/\1/p" "$2" | head -n 1; }
for r in $(seq $ROUNDS); do
    for f in 0 0.75 0.5; do
        OPENBLAS_NUM_THREADS=1 "$STEP" --model "$MODEL" --batch "$BATCH" --steps 10 --warmup 3 \
            --mode compiled --budget-frac "$f" >"$TMP/$f.$r.json" || exit 1
    done
done
echo "| budget | step ms (fastest step, median of $ROUNDS rounds) | vs none | planned peak MiB | measured peak MiB | recomputed ops | cost-model extra forward | planner | loss after |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
base=""
for f in 0 0.75 0.5; do
    ms=$(for r in $(seq $ROUNDS); do field min_ms "$TMP/$f.$r.json"; done | sort -n | sed -n 3p)
    [ -z "$base" ] && base=$ms
    j="$TMP/$f.1.json"
    pk=$(awk -v b="$(field step_peak_bytes "$j")" 'BEGIN { printf "%.2f", b / 1048576 }')
    mp=$(awk -v b="$(field peak_bytes "$j")" 'BEGIN { printf "%.2f", b / 1048576 }')
    ratio=$(awk -v a="$ms" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    name=$([ "$f" = 0 ] && echo none || awk -v f="$f" 'BEGIN { printf "%d%%", f * 100 }')
    echo "| $name | $ms | $ratio | $pk | $mp | $(field recomputed "$j") | $(field recompute_model_pct "$j")% | $(field recompute "$j") | $(field loss_last "$j") |"
done
