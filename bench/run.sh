#!/usr/bin/env bash
# run.sh: one training step of each zoo model, dbr (bench/step.c) beside
# PyTorch (bench/torch_step.py), in the same environment and the same run.
# Env: BUILD (default build), DBR_BENCH_THREADS (default 1), DBR_BENCH_MODES
# (dbr modes to run, default "eager compiled fused"), DBR_BENCH_ROUNDS (default 3: dbr and torch
# alternate, each round a full run; the table shows the median round and the
# spread, so load on a shared machine shows instead of hiding), DBR_BENCH_ARGS
# (extra args for both).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
threads=${DBR_BENCH_THREADS:-1}
modes=${DBR_BENCH_MODES:-eager compiled fused}
rounds=${DBR_BENCH_ROUNDS:-3}
step="$BUILD/bench/bench_step"
py=/usr/bin/python3   # Debian's torch is seen by this interpreter only

[[ -x "$step" ]] || { echo "run.sh: $step missing: build first (make)" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || {
    echo "run.sh: $py cannot import torch: tools/bootstrap.sh --bench" >&2; exit 1; }

# Both sides see the same BLAS/OpenMP thread settings.
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

echo "date:               $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:                $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(grep -c ^processor /proc/cpuinfo) logical CPUs)"
echo "OPENBLAS_CORETYPE:  ${OPENBLAS_CORETYPE:-<unset>}"
echo "OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS OMP_NUM_THREADS=$OMP_NUM_THREADS threads=$threads"
echo "dbr:                $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), modes $modes, $step"
echo "torch:              $("$py" -c 'import re, torch; s = torch.__config__.show(); print(torch.__version__, *re.findall(r"BLAS_INFO=\w+|CPU capability usage: \w+", s), "mkldnn" if torch.backends.mkldnn.is_available() else "")' 2>/dev/null)"
echo "blas:               dbr $(readlink -f "$(ldconfig -p | awk '/libopenblas\.so\.0 /{print $NF; exit}')"), torch via $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
echo "method:             median wall time of one step (forward, cross-entropy, backward, SGD),"
echo "                    host ovh = compiled mode's per-step recording+hash+lookup time / step time;"
echo "                    after 5 warmup steps; mlp 50 steps, cnn 20 steps; random data;"
echo "                    $rounds rounds, dbr and torch alternating; median round [min-max]"
echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((r = 0; r < rounds; r++)); do
    for mode in $modes; do
        # shellcheck disable=SC2086
        "$step" --threads "$threads" --mode "$mode" ${DBR_BENCH_ARGS:-} >>"$tmp/dbr.jsonl"
    done
    # shellcheck disable=SC2086
    "$py" bench/torch_step.py --threads "$threads" ${DBR_BENCH_ARGS:-} >>"$tmp/torch.jsonl"
done

"$py" - "$tmp/dbr.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    runs = {}
    for line in filter(str.strip, open(path)):
        r = json.loads(line)
        runs.setdefault(r["model"], []).append(r)
    return runs
def cell(rs):
    if not rs:
        return "-", None
    ms = sorted(r["median_ms"] for r in rs)
    mid = statistics.median(ms)
    return f"{mid:8.2f} [{ms[0]:.1f}-{ms[-1]:.1f}]", mid
def load_by_mode(path):
    runs = {}
    for line in filter(str.strip, open(path)):
        r = json.loads(line)
        runs.setdefault((r["model"], r.get("mode", "eager")), []).append(r)
    return runs
d, t = load_by_mode(sys.argv[1]), load(sys.argv[2])
print(f"{'model':<6} {'mode':<9} {'batch':>5} {'dbr ms':>22} {'torch ms':>22} {'dbr/torch':>9} "
      f"{'peak MiB':>9} {'host ovh':>9}   dbr loss first->last")
for (m, mode), rs in d.items():
    dc, dm = cell(rs)
    tc, tm = cell(t.get(m, []))
    ratio = f"{dm / tm:9.2f}" if tm else f"{'-':>9}"
    peak = statistics.median(r["peak_bytes"] for r in rs) / 2**20
    ovh = statistics.median(r.get("overhead_ms", 0) for r in rs)
    ovh_s = f"{100 * ovh / dm:8.2f}%" if mode in ("compiled", "fused") and dm else f"{'-':>9}"
    print(f"{m:<6} {mode:<9} {rs[0]['batch']:>5} {dc:>22} {tc:>22} {ratio} {peak:9.1f} {ovh_s}   "
          f"{rs[0]['loss_first']:.4f} -> {rs[0]['loss_last']:.4f}")
    if mode in ("compiled", "fused"):
        r = rs[0]
        print(f"{'':<6} {'':<9} plan cache {r['cache_hits']} hits / {r['cache_misses']} misses, "
              f"arena {r['arena_bytes'] / 2**20:.2f} MiB, lower bound "
              f"{r['arena_lower_bound'] / 2**20:.2f} MiB ({r['arena_bytes'] / max(r['arena_lower_bound'], 1):.3f}x)")
PY
