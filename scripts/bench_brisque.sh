#!/usr/bin/env bash
# Time BRISQUE per image in Rust (engine/examples/bench_brisque.rs, single-threaded) and in the
# Python `brisque` 0.2.0 package on the same images, side by side, and print the speed-up.
#
# Usage: scripts/bench_brisque.sh [FILES...]   (default: examples/photos/*.jpg)
# Needs the reference venv (.venv-ref, see engine/data/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
    set -- examples/photos/*.jpg
fi
reps=${REPS:-5}
python=${PYTHON:-.venv-ref/bin/python}

cargo build --quiet --release -p qrank-engine --example bench_brisque
rust_out=$(target/release/examples/bench_brisque --reps "$reps" "$@")
python_out=$(RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$python" scripts/bench_brisque.py --reps "$reps" "$@")

printf '%-44s %9s %9s %10s %10s %8s %9s\n' file rust py rust_ms py_ms ratio niqe_ms
paste <(echo "$rust_out" | grep -v -e '^file' -e '^MEAN_MS') <(echo "$python_out" | grep -v -e '^file' -e '^MEAN_MS') |
    awk -F'\t' '{ printf "%-44s %9.3f %9.3f %10.2f %10.2f %7.1fx %9.2f\n", $1, $3, $9, $4, $10, $10 / $4, $6 }'
rust_mean=$(echo "$rust_out" | awk '/^MEAN_MS/ { print $3 }')
niqe_mean=$(echo "$rust_out" | awk '/^MEAN_MS/ { print $5 }')
python_mean=$(echo "$python_out" | awk '/^MEAN_MS/ { print $3 }')
awk -v r="$rust_mean" -v p="$python_mean" -v n="$niqe_mean" 'BEGIN {
    printf "mean per image: BRISQUE rust %.2f ms, python %.2f ms, speed-up %.1fx; NIQE rust %.2f ms\n", r, p, p / r, n
}'
