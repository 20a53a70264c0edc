#!/usr/bin/env bash
# 8-bit weights on the CPU (`--precision q8`) against f32, and PyTorch's f32 and dynamic int8
# beside them, at LLaMA-2-7B's width with LAYERS of its 32 decoder layers (scripts/bench_q8.py).
# Usage: scripts/bench_q8.sh [WORK_DIR] [RUNS] [LAYERS]   (the bench_model.sh venv: torch,
# transformers; about 10 minutes at the defaults on 2 cores, 2.5 GB of disk). LAYERS=32 is the
# whole network at full size (16 GB of bf16 shards), where f32 needs a 40 GB machine: under that,
# PRECISIONS=q8 times q8 alone (no side-by-side table), e.g.
#   PRECISIONS=q8 bash scripts/bench_q8.sh /tmp/qrank-full-bench 1 32
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/qrank-bench-q8}
runs=${2:-5}
layers=${3:-4}
venv=${QRANK_BENCH_VENV:-/tmp/qrank-bench/venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers pillow numpy safetensors
fi
mkdir -p "$work"
[ -f "$work/ckpt/config.json" ] || (cd "$root/scripts" && "$venv/bin/python" bench_q8.py make "$work/ckpt" "$layers")
cargo build --release -q --manifest-path "$root/Cargo.toml" -p qrank-engine --features coinstruct --example bench_calls
for precision in ${PRECISIONS:-f32 q8}; do
  echo "== qrank, $precision =="
  "$root/target/release/examples/bench_calls" "$work/ckpt" "$root/actors/tests/data/tiny-tokenizer.json" \
    cpu "$precision" "$runs" "$root"/examples/photos/*.jpg | tee "$work/$precision.txt"
  tail -1 "$work/$precision.txt" > "$work/$precision.json"
done
if [ -z "${PRECISIONS:-}" ]; then
  echo "== side by side =="
  (cd "$root/scripts" && "$venv/bin/python" bench_q8.py anchor "$work/f32.json" "$work/q8.json" "$runs")
fi
