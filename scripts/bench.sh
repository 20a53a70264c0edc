#!/usr/bin/env bash
# The foundation benchmarks in one run, each side by side with its anchor:
#  - the Plackett-Luce fit against choix's ilsr_top1 at N = 2,000 (and alone at 1,000,000 items);
#  - BRISQUE per image against the Python `brisque` package;
#  - a job's refits from the last round's fit against the same refits from zero;
#  - `qrank eval` against scipy's spearmanr and kendalltau on the same files.
# Usage: bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bench_fit.sh
echo
echo "== BRISQUE per image, Rust vs the Python brisque 0.2.0 package =="
bash scripts/bench_brisque.sh
echo
echo "== Refits within a top-k job: from the last fit vs from zero =="
cargo build -q --release -p qrank-engine --example bench_refit
target/release/examples/bench_refit
echo
echo "== qrank eval vs scipy, 10,000 / 100,000 / 1,000,000 images =="
cargo build -q --release -p actors --bin qrank
for n in 10000 100000 1000000; do
    "${PYTHON:-.venv-ref/bin/python}" scripts/bench_eval.py --qrank target/release/qrank --n "$n"
done
