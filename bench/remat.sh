#!/bin/sh
# remat.sh: the recomputation planner on the model zoo (meta mode): the
# smallest feasible peak against the paper's reductions (Kusumoto et al.,
# NeurIPS 2019, Table 2), the DP's planning time, and the recompute overhead
# of each strategy at a budget of 50% of the no-recompute peak.
# usage: bench/remat.sh PATH/TO/dbr   (prints a markdown table)
set -u
DBR=${1:?usage: bench/remat.sh PATH/TO/dbr}
[ -x "$DBR" ] || { echo "remat.sh: $DBR is not executable" >&2; exit 2; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT

# field NAME FILE: a number field of the one-line JSON object in FILE, outside
# its "step" object; sfield: inside it
field() { sed 's/, "step": {.*//' "$2" | sed -n "s/.*[{ ]\"$1\": *\([-0-9.e+]*\).*/\1/p" | head -n 1; }
sfield() { sed -n 's/.*"step": {//p' "$2" | sed -n "s/.*[{ ]\"$1\": *\([-0-9.e+]*\).*/\1/p" | head -n 1; }
gib() { awk -v b="$1" 'BEGIN { if (b == "") print "-"; else printf "%.2f GiB", b / 1073741824 }'; }

echo "| model | no-recompute peak | smallest peak | reduction | step: no-recompute | step: smallest | step: reduction | paper | dp plan ms (50%) | overhead at 50%: chen | dp | auto | step at 50% (auto): overhead, plan ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for spec in resnet50:-62 resnet152:-75 vgg19:-36 densenet121:-80 googlenet:-39 unet:-48; do
    m=${spec%%:*}
    paper=${spec#*:}
    batch=32
    [ "$m" = unet ] && batch=8 # U-Net's input is 1x572x572 (models/zoo.c); others 3x224x224
    # --budget min: the least memory each planner reaches; the planner's own
    # model (forward graph, simulator) and the whole compiled step (backward
    # and optimizer included, memplan's arena)
    "$DBR" plan --model "$m" --batch "$batch" --budget min --strategy auto --json \
        >"$TMP/min.json" 2>/dev/null
    van=$(field vanilla_peak_bytes "$TMP/min.json")
    minp=$(field peak_bytes "$TMP/min.json")
    svan=$(sfield noremat_peak_bytes "$TMP/min.json")
    smin=$(sfield peak_bytes "$TMP/min.json")
    red=$(awk -v a="$van" -v b="$minp" 'BEGIN { if (a == "" || b == "" || a == 0) print "-"; else printf "%.0f%%", 100 * (b - a) / a }')
    sred=$(awk -v a="$svan" -v b="$smin" 'BEGIN { if (a == "" || b == "" || a == 0) print "-"; else printf "%.0f%%", 100 * (b - a) / a }')
    row="| $m | $(gib "$van") | $(gib "$minp") | $red | $(gib "$svan") | $(gib "$smin") | $sred | $paper% |"
    ov=""
    dpms="-"
    for s in chen dp auto; do
        "$DBR" plan --model "$m" --batch "$batch" --budget 50% --strategy "$s" --json \
            >"$TMP/$s.json" 2>/dev/null
        o=$(field overhead_pct "$TMP/$s.json")
        fits=$(sed 's/, "step": {.*//' "$TMP/$s.json" | sed -n 's/.*"feasible": *\(true\|false\).*/\1/p')
        if [ -z "$o" ]; then
            o="-"
        elif [ "$fits" != true ]; then
            o="$o% (does not fit)"
        else
            o="$o%"
        fi
        ov="$ov $o |"
        [ "$s" = dp ] && dpms=$(field plan_ms "$TMP/dp.json")
    done
    so=$(sfield overhead_pct "$TMP/auto.json")
    sms=$(sfield plan_ms "$TMP/auto.json")
    sfits=$(sed -n 's/.*"step": {.*"feasible": *\(true\|false\).*/\1/p' "$TMP/auto.json")
    [ "$sfits" = true ] || so="${so:--}% (does not fit)"
    [ "$sfits" = true ] && so="$so%"
    echo "$row ${dpms:--} |$ov ${so}, ${sms:--} ms |"
done
