# Helpers shared by the .ci scripts. Source it; it defines functions and settings only.

# Everything the CI installs or runs lives here, outside the checkout, so a clean clone stays
# clean and a rerun on the same machine finds its venv and servers again.
QRANK_CI_HOME="${QRANK_CI_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/qrank-ci}"
mkdir -p "$QRANK_CI_HOME"

# The test configuration, fixed so every script and test agrees on it. The keys are throwaway
# credentials of a server that listens on 127.0.0.1 only.
export QRANK_TEST_S3_ENDPOINT="${QRANK_TEST_S3_ENDPOINT:-http://127.0.0.1:8333}"
export QRANK_TEST_S3_BUCKET="${QRANK_TEST_S3_BUCKET:-qrank-test}"
export QRANK_TEST_S3_REGION="${QRANK_TEST_S3_REGION:-us-east-1}"
export QRANK_TEST_S3_ACCESS_KEY="${QRANK_TEST_S3_ACCESS_KEY:-qrank-ci-access}"
export QRANK_TEST_S3_SECRET_KEY="${QRANK_TEST_S3_SECRET_KEY:-qrank-ci-secret-0123456789}"
export QRANK_TEST_AMQP_URL="${QRANK_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# The Prometheus server .ci/install-prometheus.sh unpacks, for the dashboard's test.
export QRANK_TEST_PROMETHEUS="${QRANK_TEST_PROMETHEUS:-$QRANK_CI_HOME/prometheus/prometheus}"

log() { printf '[ci %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Run as root directly, otherwise through sudo (a developer's machine).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Create the venv $1 and pip-install the remaining arguments into it. Debian's own python3 ships
# venv (ensurepip) as a separate package, so that is installed when the first try fails.
make_venv() {
    local venv=$1
    shift
    if ! python3 -m venv "$venv" 2>"$QRANK_CI_HOME/venv.err"; then
        log "python3 -m venv failed ($(tail -n 1 "$QRANK_CI_HOME/venv.err")); installing python3-venv"
        rm -rf "$venv"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

# True once something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no extra tools).
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Retry "$@" every half second until it succeeds or $1 seconds pass.
wait_until() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.5
    done
}
