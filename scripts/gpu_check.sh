#!/usr/bin/env bash
# The device check of the Co-Instruct network on a lent GPU: golden parity in f32 and bf16, a
# throughput benchmark at the full size (random weights) beside PyTorch on the same card, and the
# qrank binary ranking the example photos with that checkpoint on the GPU, end to end.
#   scripts/gpu_check.sh build   (here: CUDA 13 toolchain, release build, strip, xz -> target/gpu/)
#   scripts/gpu_check.sh run     (on the GPU machine, with target/gpu carried; writes $OUT/*.txt)
# RUNS (default 20) sets how many timed runs each median takes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
examples=(gpu_parity bench_calls)
case "${1:-}" in
  build)
    cargo fetch   # the toolchain script reads cudarc's sources for the driver symbols it stubs
    toolchain=$(bash ../shared/scripts/cuda-toolchain.sh /tmp/cuda13)
    eval "$toolchain"
    cargo build --release -p qrank-engine --features cuda ${examples[@]/#/--example }
    cargo build --release -p actors --features cuda --bin qrank
    mkdir -p target/gpu
    for e in "${examples[@]}"; do
      strip -o "target/gpu/$e" "target/release/examples/$e"
    done
    strip -o target/gpu/qrank target/release/qrank
    for f in "${examples[@]}" qrank; do
      xz -f -T2 "target/gpu/$f"   # 50-90 MB -> 7-15 MB each, under the 64 MiB carry limit
    done
    ;;
  run)
    out=${OUT:-.}
    runs=${RUNS:-20}
    for f in "${examples[@]}" qrank; do
      xz -dkf "target/gpu/$f.xz" && chmod +x "target/gpu/$f"
    done
    lib=$(python3 -c "import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))")
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    status=0
    for precision in f32 bf16; do
      target/gpu/gpu_parity engine/tests/golden/coinstruct-tiny cuda "$precision" \
        | tee "$out/parity_$precision.txt" || status=1
    done
    # The full-size checkpoint (16 GB) goes to memory when it fits there, else to disk.
    ckpt=/dev/shm/qrank-full
    [ -w /dev/shm ] || ckpt=/tmp/qrank-full
    python3 scripts/bench_gpu.py make "$ckpt" || status=1
    target/gpu/bench_calls "$ckpt" actors/tests/data/tiny-tokenizer.json cuda bf16 "$runs" examples/photos/*.jpg \
      | tee "$out/bench_calls.txt" || status=1
    tail -1 "$out/bench_calls.txt" > /tmp/bench_calls.json
    python3 scripts/bench_gpu.py anchor /tmp/bench_calls.json "$runs" | tee "$out/bench_gpu.txt" || status=1
    # End to end: the CLI ranks the 20 example photos on every GPU the driver sees (2 calls per
    # image: 40 calls of up to 4 images), and is told to use a GPU that is not there.
    cp actors/tests/data/tiny-tokenizer.json "$ckpt/tokenizer.json"
    { time target/gpu/qrank rank examples/photos --device cuda --model "$ckpt" --budget 2 \
        --format json --out "$out/rank.json"; } 2>&1 | tee "$out/end_to_end.txt" || status=1
    [ -s "$out/rank.json" ] || status=1
    head -c 600 "$out/rank.json"; echo
    if QRANK_DEVICE=cuda:7 target/gpu/qrank compare examples/photos/coffee.jpg examples/photos/rocket.jpg \
        --model "$ckpt" 2>&1 | tee -a "$out/end_to_end.txt"; then
      echo "cuda:7 did not fail" && status=1
    fi
    exit $status
    ;;
  *) echo "usage: $0 build|run" >&2; exit 64 ;;
esac
