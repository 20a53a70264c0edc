#!/usr/bin/env bash
# CPU benchmark of qrank's Co-Instruct network against Hugging Face transformers and Pillow at
# the same mid-size configuration with random weights (see scripts/bench_model.py), then whole
# full-ranking calls of 4 through the comparator.
# Usage: scripts/bench_model.sh [WORK_DIR] [ITERS]   (installs torch + transformers in a venv)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/qrank-bench}
iters=${2:-5}
venv=${QRANK_BENCH_VENV:-$work/venv}
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers pillow numpy safetensors
fi
"$venv/bin/python" "$root/scripts/bench_model.py" make "$work"
cargo run --release -q --manifest-path "$root/Cargo.toml" -p qrank-engine --features coinstruct \
  --example bench_model -- "$work/ckpt" "$iters" "$work"/jpegs/*.jpg > "$work/rust.json"
cat "$work/rust.json"
"$venv/bin/python" "$root/scripts/bench_model.py" run "$work" "$work/rust.json" "$iters"
# Whole comparator calls on the same checkpoint (no transformers equivalent: Co-Instruct's
# prompt, cache and stages are ours). Set beside a build of an earlier commit to see a change.
cargo run --release -q --manifest-path "$root/Cargo.toml" -p qrank-engine --features coinstruct \
  --example bench_calls -- "$work/ckpt" "$root/actors/tests/data/tiny-tokenizer.json" cpu f32 "$iters" \
  "$root"/examples/photos/*.jpg
