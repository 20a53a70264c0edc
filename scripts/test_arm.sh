#!/usr/bin/env bash
# The engine's tests (the model's golden parity included) built for 64-bit ARM and run under
# qemu-aarch64, whose CPU has the dot products that candle's ARM kernels for 8-bit weights use,
# as every Apple CPU does. It is the check of engine::model::q8_blocks on ARM, where candle tiles
# more weight shapes than on x86 (the golden checkpoint's too), that this x86 machine can make.
# Usage: scripts/test_arm.sh [nextest filter...]   (about 6 minutes to build on 2 cores, then 2 to
# run; installs Debian's gcc-aarch64-linux-gnu and qemu-user, and rustup's aarch64 standard
# library, when missing). Not part of CI: rustup's download server is not one of the registries.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=aarch64-unknown-linux-gnu
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cd "$root"
cargo nextest run -p qrank-engine --features coinstruct --target "$target" \
  --target-dir "${ARM_TARGET_DIR:-target/aarch64}" --no-fail-fast "$@"
