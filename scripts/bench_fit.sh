#!/usr/bin/env bash
# The ranking-fit benchmark, side by side with choix (the reference Python library):
#  1. N = 2,000 items, 4N top-1 groups of 4: our fit vs choix.ilsr_top1 on the same file;
#  2. our fit alone at N = 1,000,000 items and 10,000,000 observations: time and peak memory.
# Usage: bash scripts/bench_fit.sh [N_LARGE] [OBS_LARGE]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${QRANK_BENCH_VENV:-.venv-bench}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q choix==0.4.1 numpy scipy
cargo build -q --release -p qrank-engine --example bench_fit
bench=target/release/examples/bench_fit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== fit, N = 2,000 items, 8,000 top-1 groups of 4, alpha 0.01 =="
$bench generate 2000 42 "$work/data.json"
$bench fit "$work/data.json" > "$work/ours.jsonl"
"$venv/bin/python" scripts/bench_fit.py "$work/data.json" "$work/ours.jsonl"

echo "== fit alone, ${1:-1000000} items, ${2:-10000000} top-1 groups of 4 =="
/usr/bin/time -f "process: %e s wall, %M KiB peak RSS (generation included)" $bench large "${1:-1000000}" "${2:-10000000}"
