#!/usr/bin/env bash
# Bounded load test of one `qrank serve` replica against the real test servers: 200 jobs of 50
# small generated images (override with QRANK_LOAD_JOBS, QRANK_LOAD_IMAGES,
# QRANK_LOAD_IMAGE_SIDE), published at once. Fails unless every job gets exactly one result;
# prints jobs/s, images/s and the replica's peak resident memory.
#
#   bash scripts/load_test.sh                          # 200 x 50
#   QRANK_LOAD_JOBS=1 QRANK_LOAD_IMAGES=100000 bash scripts/load_test.sh   # one huge job
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/lib.sh
bash .ci/start-s3.sh
bash .ci/start-rabbitmq.sh
cargo build -p actors --bin qrank
cargo test -p qrank-tests --test service_load -- --ignored --nocapture 2>&1 | grep -E "^(uploaded|load:)|test result|panicked|FAILED"
