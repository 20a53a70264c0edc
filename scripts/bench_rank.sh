#!/usr/bin/env bash
# The ranking-efficiency benchmark: simulated comparators (pair accuracy 0.80, first slot favoured
# by 0.3 log-odds) under random and adaptive schedules, choix fits of the same random data,
# the Cramer-Rao bound on the slot-bias error, and how top-10% precision grows with N with no
# plan at all.
# Usage: bash scripts/bench_rank.sh [SEEDS]   (default 3 seeds per row; the top-k and threshold
# part alone takes about 4 min at 3 seeds on 2 cores, most of it at N = 20,000). The slot-bias
# part runs QRANK_SLOT_BIAS_SEEDS seeds (default 200, about 10 min for both answers), since its
# error varies by half from seed to seed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${QRANK_BENCH_VENV:-.venv-bench}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q choix==0.4.1 numpy scipy
cargo build -q --release -p qrank-engine --example bench_rank
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
echo "== Full ranking quality by budget (mean over seeds) =="
target/release/examples/bench_rank table "${1:-3}" "$dump"
echo
echo "== Top-10% precision at 2 calls per image, and the 2.5-call target =="
target/release/examples/bench_rank topk "${1:-3}"
echo
echo "== Slot-bias error at N = 2,000 by answer and budget =="
target/release/examples/bench_rank slot-bias "${QRANK_SLOT_BIAS_SEEDS:-200}"
echo
echo "== The least slot-bias error the data allow at N = 2,000 (Cramer-Rao bounds) =="
"$venv/bin/python" scripts/slot_bias_bound.py
echo
echo "== Top-10% precision of scores with independent normal errors, no plan or fit (how it grows with N) =="
"$venv/bin/python" scripts/small_k_precision.py
echo
echo "== choix on the same random-schedule data (seed 1; no slot-bias correction) =="
"$venv/bin/python" - "$dump" <<'PY'
import glob, json, sys
import choix, numpy as np
from scipy.stats import spearmanr
for path in sorted(glob.glob(sys.argv[1] + "/*.json")):
    d = json.load(open(path))
    fit = choix.ilsr_top1 if d["kind"] == "top1" else choix.ilsr_rankings
    data = [(w, list(l)) for w, l in d["comparisons"]] if d["kind"] == "top1" else d["comparisons"]
    params = fit(d["n_items"], data, alpha=d["alpha"])
    rho = spearmanr(params, d["true_params"])[0]
    print(f"| {d['n_items']} | {d['kind']} | {d['budget']} | choix ilsr | {rho:.3f} |")
PY
