#!/usr/bin/env bash
# The foundation benchmarks in one run, each side by side with its anchor:
#  - the Plackett-Luce fit against choix's ilsr_top1 at N = 2,000 (and alone at 1,000,000 items);
#  - BRISQUE per image against the Python `brisque` package.
# Usage: bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bench_fit.sh
echo
echo "== BRISQUE per image, Rust vs the Python brisque 0.2.0 package =="
bash scripts/bench_brisque.sh
