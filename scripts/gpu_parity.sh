#!/usr/bin/env bash
# Golden parity of the Co-Instruct network on a lent GPU, in f32 and bf16.
#   scripts/gpu_parity.sh build   (here: CUDA 13 toolchain, release build, strip, xz -> target/gpu/)
#   scripts/gpu_parity.sh run     (on the GPU machine, with target/gpu carried; writes $OUT/*.txt)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case "${1:-}" in
  build)
    eval "$(bash ../shared/scripts/cuda-toolchain.sh /tmp/cuda13)"
    cargo build --release -p qrank-engine --features cuda --example gpu_parity
    mkdir -p target/gpu
    strip -o target/gpu/gpu_parity target/release/examples/gpu_parity
    xz -f -T2 target/gpu/gpu_parity   # about 50 MB -> 7 MB, under the 64 MiB carry limit
    ;;
  run)
    xz -dkf target/gpu/gpu_parity.xz && chmod +x target/gpu/gpu_parity
    lib=$(python3 -c "import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))")
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nvidia-smi --query-gpu=name,driver_version --format=csv
    status=0
    for precision in f32 bf16; do
      target/gpu/gpu_parity engine/tests/golden/coinstruct-tiny cuda "$precision" | tee "${OUT:-.}/$precision.txt" || status=1
    done
    exit $status
    ;;
  *) echo "usage: $0 build|run" >&2; exit 64 ;;
esac
