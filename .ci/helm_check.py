#!/usr/bin/env python3
"""Render the Helm chart with every values file and check what matters about the result.

Run by `.ci/helm-check.sh` with its venv's Python (PyYAML comes with yamllint; tomllib is in
the standard library from 3.11, tomli before). For the default values and each
`helm/qrank/ci/*-values.yaml` it:

1. renders the chart (`helm template`);
2. validates every manifest of a built-in kind offline with `kubernetes-validate --strict`;
   the CRD kinds in `CRD_KINDS` (KEDA, Prometheus Operator) have no bundled schema, so they are
   skipped there, explicitly, and checked field by field below instead; any other kind fails;
3. asserts the facts the service depends on (see `check_case`): probe paths and the port match
   the service's own, the GPU request is present iff `gpu.enabled` (and then the model runs on
   `cuda`), KEDA watches the service's jobs queue, the Secret wiring, the non-root read-only
   container, the grace periods, the image variant against the Dockerfile's targets, and the
   alerts name only metrics and labels the service exports (`check_alerts`), and promtool
   (Prometheus's own parser) parses them; the Grafana dashboard's ConfigMap is there iff enabled;
4. runs the binary's own config check on the rendered `qrank.toml`
   (`qrank serve --check-config`), with the environment the pod would get;
5. starts `qrank serve` with that config (HTTP on a free loopback port, no broker) and requests
   the Deployment's probe and metrics paths: liveness 200, readiness 503 (no broker), metrics 200;
   then SIGTERM, which must end it well within `terminationGracePeriodSeconds`. Where the alerts
   are enabled, every metric they watch must be exported from the start (`check_alert_series`).

Once, whatever the values, it checks the Grafana dashboard file (`check_dashboard`): its panels,
that its queries name only metrics and labels the service exports, and that promtool parses them;
and it runs promtool's unit tests of the alerts (`.ci/alerts_test.yaml`, `check_alert_tests`).

It also renders a few wrong values and expects the chart to refuse them, and expects the
binary to refuse a misspelt config key, so the checks above cannot pass vacuously.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "qrank"
KUBERNETES_VERSION = "1.30.0"
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}
# Custom resources: no schema in kubernetes-validate; check_case checks their fields instead.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Labels Prometheus adds to every scraped series (the Prometheus Operator's target labels), and
# the histogram buckets' `le`: alerts may group by them although the service does not set them.
TARGET_LABELS = {"namespace", "pod", "le"}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
CONFIG_PATH = "/etc/qrank/qrank.toml"


class CheckFailed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------------------------------------
# What the service and the image say, read from their sources so the chart cannot drift.


def service_facts() -> dict:
    """Defaults and routes of `qrank serve`, from actors/src (config.rs and service/http.rs)."""
    config_rs = (ROOT / "actors/src/config.rs").read_text()
    http_rs = (ROOT / "actors/src/service/http.rs").read_text()

    def find(pattern: str, text: str, what: str) -> str:
        m = re.search(pattern, text)
        if not m:
            raise CheckFailed(f"cannot find {what} in actors/src; update .ci/helm_check.py to match the service")
        return m.group(1)

    routes = set(re.findall(r'\.route\("(/[^"]*)"', http_rs))
    # The metrics and their label names, from the registry's constructors.
    metrics_rs = (ROOT / "actors/src/service/metrics.rs").read_text().split("#[cfg(test)]", 1)[0]
    metric_names = set(re.findall(r'"(qrank_[a-z_]+)"', metrics_rs))
    label_names = set(re.findall(r'"([a-z_]+)"', " ".join(re.findall(r"&\[([^\]]*)\]", metrics_rs))))
    # The configuration's sections and keys: `pub section: SectionConfig` in `Config`, then the
    # `pub key:` fields of each section's struct.
    structs = {
        m.group(1): re.findall(r"^\s*pub (\w+):", m.group(2), re.M)
        for m in re.finditer(r"pub struct (\w+) \{(.*?)^\}", config_rs, re.S | re.M)
    }
    expect("Config" in structs, "cannot find `pub struct Config` in actors/src/config.rs")
    sections = dict(
        re.findall(r"^\s*pub (\w+): (\w+),", config_rs.split("pub struct Config {", 1)[1].split("}", 1)[0], re.M)
    )
    keys = {section: set(structs.get(struct, [])) for section, struct in sections.items()}
    return {
        "config_keys": keys,
        "queue": find(r'\bqueue: "([^"]+)"\.into\(\)', config_rs, "the default amqp.queue"),
        "groups_queue": find(r'\bgroups_queue: "([^"]+)"\.into\(\)', config_rs, "the default amqp.groups_queue"),
        "dead_letter_exchange": find(r'dead_letter_exchange: "([^"]+)"', config_rs, "the default DLX"),
        "port": int(find(r"listen: SocketAddr::from\(\(\[[0-9, ]+\], (\d+)\)\)", config_rs, "the default port")),
        "grace_period_secs": int(find(r"grace_period_secs: (\d+)\s*\}", config_rs, "the default grace period")),
        "routes": routes,
        "metric_names": metric_names,
        "label_names": label_names,
    }


def dockerfile_facts() -> dict:
    text = (ROOT / "Dockerfile").read_text()
    users = set(re.findall(r"^USER (\d+)(?::\d+)?\s*$", text, re.M))
    return {
        "targets": set(re.findall(r"^FROM \S+ AS (\S+)\s*$", text, re.M | re.I)),
        "users": users,
        "cmd": [json.loads(c) for c in re.findall(r"^CMD (\[.*\])\s*$", text, re.M)],
        "entrypoint": [json.loads(e) for e in re.findall(r"^ENTRYPOINT (\[.*\])\s*$", text, re.M)],
    }


# ---------------------------------------------------------------------------------------------
# Rendering.


def merged_values(files: list[Path]) -> dict:
    """values.yaml overlaid with `files`, as Helm merges them (maps deep, the rest replaced)."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return copy.deepcopy(over)

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        values = merge(values, yaml.safe_load(f.read_text()) or {})
    return values


def helm_template(helm: str, files: list[Path], sets: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [helm, "template", "qrank", str(CHART), "--namespace", "qrank", "--kube-version", KUBERNETES_VERSION]
    for f in files:
        cmd += ["-f", str(f)]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True)


def render(helm: str, files: list[Path], sets: list[str] = ()) -> tuple[str, list[dict]]:
    out = helm_template(helm, files, sets)
    if out.returncode != 0:
        raise CheckFailed(f"helm template failed:\n{out.stderr}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return out.stdout, docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    expect(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0]


def config_map(docs: list[dict]) -> dict:
    """The ConfigMap holding `qrank.toml` (another holds the Grafana dashboard when enabled)."""
    found = [d for d in by_kind(docs, "ConfigMap") if "qrank.toml" in d.get("data", {})]
    expect(len(found) == 1, f"expected one ConfigMap with qrank.toml, found {len(found)}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Schema validation.


def validate_schemas(docs: list[dict], validator: str, workdir: Path, name: str) -> list[str]:
    core, skipped = [], []
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion")
        if kind in CORE_KINDS:
            core.append(d)
        elif (api, kind) in CRD_KINDS:
            skipped.append(f"{kind} ({api})")
        else:
            raise CheckFailed(f"unexpected kind {api}/{kind}: add it to CORE_KINDS or CRD_KINDS")
    path = workdir / f"{name}.core.yaml"
    path.write_text(yaml.safe_dump_all(core, sort_keys=False))
    out = subprocess.run(
        [validator, "-k", KUBERNETES_VERSION, "--strict", "--quiet", str(path)], capture_output=True, text=True
    )
    expect(out.returncode == 0, f"kubernetes-validate {KUBERNETES_VERSION} --strict failed:\n{out.stdout}{out.stderr}")
    return skipped


# ---------------------------------------------------------------------------------------------
# The facts.


def secret_ref(env: list[dict], name: str) -> dict | None:
    for e in env:
        if e["name"] == name:
            return e.get("valueFrom", {}).get("secretKeyRef")
    return None


def check_case(docs: list[dict], values: dict, service: dict, docker: dict) -> dict:
    """Assert the facts for one rendering; return what the config and serve checks need."""
    for d in docs:
        labels = d["metadata"].get("labels", {})
        missing = [l for l in STANDARD_LABELS if l not in labels]
        expect(not missing, f"{d['kind']}/{d['metadata']['name']} lacks labels {missing}")

    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    expect(list(containers) == ["qrank"], f"containers: {list(containers)}")
    qrank = containers["qrank"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    expect(all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items()), "pod labels miss the selector")

    # The configuration file, as the pod sees it.
    configmap = config_map(docs)
    toml_text = configmap["data"]["qrank.toml"]
    config = tomllib.loads(toml_text)
    mounts = {m["mountPath"]: m for m in qrank["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_mount = mounts.get(os.path.dirname(CONFIG_PATH))
    expect(config_mount is not None, f"nothing mounted at {os.path.dirname(CONFIG_PATH)}")
    expect(
        volumes[config_mount["name"]].get("configMap", {}).get("name") == configmap["metadata"]["name"],
        "the config mount is not the chart's ConfigMap",
    )
    expect(qrank.get("args") == ["serve", "--config", CONFIG_PATH], f"container args: {qrank.get('args')}")
    expect(qrank.get("command") is None, "the container overrides the image's ENTRYPOINT")
    expect(
        docker["entrypoint"] and all(e == ["qrank"] for e in docker["entrypoint"]), "Dockerfile ENTRYPOINT is not qrank"
    )
    expect(
        all(c == qrank["args"] for c in docker["cmd"]), f"Dockerfile CMD {docker['cmd']} differs from the chart's args"
    )

    # Port and probes: the container port is the one qrank.toml binds, and the probe paths
    # are routes the service serves.
    listen_port = int(config.get("http", {}).get("listen", f"0.0.0.0:{service['port']}").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in qrank["ports"]}
    expect(ports == {"http": listen_port}, f"container ports {ports}, but qrank.toml listens on {listen_port}")
    probes = {}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = qrank.get(probe, {}).get("httpGet")
        expect(get is not None, f"no {probe} httpGet")
        expect(get["path"] == path, f"{probe} path {get['path']}, expected {path}")
        expect(get["path"] in service["routes"], f"{probe} path {get['path']} is not a route of the service")
        expect(ports.get(get["port"], get["port"]) == listen_port, f"{probe} port {get['port']} is not {listen_port}")
        probes[probe] = get["path"]

    svc = one(docs, "Service")
    expect(svc["spec"]["selector"] == selector, "Service selector differs from the Deployment's")
    svc_ports = svc["spec"]["ports"]
    expect(len(svc_ports) == 1 and svc_ports[0]["targetPort"] == "http", f"Service ports: {svc_ports}")

    # Shutdown: Kubernetes must wait longer than the service drains.
    grace = config.get("shutdown", {}).get("grace_period_secs", service["grace_period_secs"])
    termination = spec["terminationGracePeriodSeconds"]
    expect(termination > grace, f"terminationGracePeriodSeconds {termination} <= shutdown.grace_period_secs {grace}")
    expect(
        re.fullmatch(r"[0-9a-f]{64}", pod["metadata"].get("annotations", {}).get("checksum/config", "")),
        "no checksum/config annotation on the pod",
    )

    # Non-root, read-only root filesystem, writable cache and /tmp.
    pod_sc, sc = spec.get("securityContext", {}), qrank.get("securityContext", {})
    expect(pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True, "runAsNonRoot is not set")
    expect(
        str(pod_sc.get("runAsUser")) in docker["users"],
        f"runAsUser {pod_sc.get('runAsUser')} is not the image's USER {docker['users']}",
    )
    expect(sc.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
    expect(sc.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed")
    expect("ALL" in sc.get("capabilities", {}).get("drop", []), "capabilities are not dropped")
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    expect("/tmp" in writable and values["cache"]["mountPath"] in writable, f"writable mounts: {sorted(writable)}")
    env = {e["name"]: e for e in qrank["env"]}
    hf_home = env["HF_HOME"]["value"]
    expect(
        any(hf_home == w or hf_home.startswith(w.rstrip("/") + "/") for w in writable),
        f"HF_HOME {hf_home} is not writable",
    )
    for init in spec.get("initContainers", []):
        expect(
            init.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
            f"init container {init['name']} has a writable root",
        )

    # GPU: requested (and limited) iff enabled; the image variant follows.
    gpu = values["gpu"]
    resources = qrank.get("resources", {})
    for part in ("limits", "requests"):
        got = resources.get(part, {}).get(gpu["resourceName"])
        if gpu["enabled"]:
            expect(str(got) == str(gpu["count"]), f"{part} {gpu['resourceName']} = {got}, expected {gpu['count']}")
        else:
            expect(got is None, f"{part} asks for {gpu['resourceName']} with gpu.enabled false")
    # The model runs on the pod's GPUs: the service's default, `auto`, would fall back to the CPU.
    device = config.get("model", {}).get("device")
    wanted = values["config"]["model"].get("device") or ("cuda" if gpu["enabled"] else None)
    expect(device == wanted, f"model.device = {device!r} in qrank.toml, expected {wanted!r}")
    variant = "cuda" if gpu["enabled"] else "cpu"
    expect(variant in docker["targets"], f"the Dockerfile has no target {variant}")
    if not values["image"]["tag"]:
        expect(
            qrank["image"].split("@")[0].endswith(f"-{variant}"), f"image {qrank['image']} is not the {variant} variant"
        )

    # Secrets: the broker URL comes from the Secret, which is the chart's or the existing one.
    amqp_ref = secret_ref(qrank["env"], "QRANK_AMQP__URL")
    expect(amqp_ref is not None and not amqp_ref.get("optional"), "QRANK_AMQP__URL is not a required secretKeyRef")
    expect("url" not in config.get("amqp", {}), "the broker URL is in the ConfigMap")
    secrets = by_kind(docs, "Secret")
    existing = values["secrets"]["existingSecret"]
    if existing:
        expect(not secrets, "a Secret is rendered although secrets.existingSecret is set")
        expect(amqp_ref["name"] == existing, f"QRANK_AMQP__URL reads {amqp_ref['name']}, not {existing}")
        amqp_url = "amqp://user:password@rabbitmq:5672/%2f"  # stands in for the existing Secret's value
    else:
        expect(
            len(secrets) == 1 and secrets[0]["metadata"]["name"] == amqp_ref["name"],
            "the chart's Secret is not the one referenced",
        )
        amqp_url = base64.b64decode(secrets[0]["data"][amqp_ref["key"]]).decode()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = secret_ref(qrank["env"], name)
        expect(ref is not None and ref["name"] == amqp_ref["name"], f"{name} does not come from the same Secret")

    # Scaling: KEDA on the service's jobs queue, or an HPA, never both; no fixed replicas then.
    keda, hpa = values["autoscaling"]["keda"]["enabled"], values["autoscaling"]["hpa"]["enabled"]
    scaled = by_kind(docs, "ScaledObject")
    expect(len(scaled) == int(keda), f"{len(scaled)} ScaledObjects with autoscaling.keda.enabled={keda}")
    expect(
        len(by_kind(docs, "HorizontalPodAutoscaler")) == int(hpa), "HPA presence differs from autoscaling.hpa.enabled"
    )
    expect(("replicas" in deployment["spec"]) == (not keda and not hpa), "replicas set while autoscaled, or missing")
    queue = config.get("amqp", {}).get("queue", service["queue"])
    for so in scaled:
        target = so["spec"]["scaleTargetRef"]
        expect(
            target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"],
            "ScaledObject targets another workload",
        )
        # The jobs queue, and the shared groups queue when jobs share their groups.
        shares = int(config.get("scale", {}).get("share_groups_from_images") or 0) > 0
        queues = [queue] + ([config.get("amqp", {}).get("groups_queue", service["groups_queue"])] if shares else [])
        triggers = so["spec"]["triggers"]
        expect(
            [t["metadata"]["queueName"] for t in triggers] == queues,
            f"KEDA watches {[t['metadata']['queueName'] for t in triggers]}, qrank consumes {queues}",
        )
        auth = one(docs, "TriggerAuthentication")
        for trigger in triggers:
            expect(trigger["type"] == "rabbitmq", f"trigger type {trigger['type']}")
            expect(
                trigger["metadata"]["mode"] == "QueueLength" and trigger["metadata"]["value"].isdigit(),
                "trigger mode/value",
            )
            expect(
                trigger["authenticationRef"]["name"] == auth["metadata"]["name"],
                "trigger names another TriggerAuthentication",
            )
        (host,) = auth["spec"]["secretTargetRef"]
        expect(
            (host["parameter"], host["name"], host["key"]) == ("host", amqp_ref["name"], amqp_ref["key"]),
            f"KEDA's broker URL {host} is not the service's {amqp_ref}",
        )
    for hpa_doc in by_kind(docs, "HorizontalPodAutoscaler"):
        expect(
            hpa_doc["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"], "HPA targets another workload"
        )

    # Monitors scrape the service's metrics route on its port.
    expect("/metrics" in service["routes"], "the service has no /metrics route")
    for pm in by_kind(docs, "PodMonitor"):
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        expect(ep["port"] == "http" and ep["path"] == "/metrics", f"PodMonitor endpoint {ep}")
        expect(pm["spec"]["selector"]["matchLabels"] == selector, "PodMonitor selects other pods")
    for sm in by_kind(docs, "ServiceMonitor"):
        (ep,) = sm["spec"]["endpoints"]
        expect(ep["port"] == svc_ports[0]["name"] and ep["path"] == "/metrics", f"ServiceMonitor endpoint {ep}")
    expect(len(by_kind(docs, "PodMonitor")) == int(values["metrics"]["podMonitor"]["enabled"]), "PodMonitor presence")
    expect(
        len(by_kind(docs, "ServiceMonitor")) == int(values["metrics"]["serviceMonitor"]["enabled"]),
        "ServiceMonitor presence",
    )
    check_alerts(docs, values, service)
    check_dashboard_map(docs, values)
    expect(len(by_kind(docs, "PodDisruptionBudget")) == int(values["podDisruptionBudget"]["enabled"]), "PDB presence")
    expect(len(by_kind(docs, "NetworkPolicy")) == int(values["networkPolicy"]["enabled"]), "NetworkPolicy presence")

    # Model volume: mounted as HF_HOME; a download fills the same volume first.
    model = values["modelVolume"]
    if model["enabled"]:
        expect(mounts.get(hf_home, {}).get("name") == "model", "the model volume is not mounted at HF_HOME")
        inits = spec.get("initContainers", [])
        expect(
            len(inits) == int(model["download"]["enabled"]),
            "init container presence differs from modelVolume.download.enabled",
        )
        for init in inits:
            init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
            expect(init_mounts.get(hf_home) == "model", "the download writes elsewhere than HF_HOME")

    literal_env = {e["name"]: e["value"] for e in qrank["env"] if "value" in e and e["name"].startswith("QRANK_")}
    return {
        "toml": toml_text,
        "env": {**literal_env, "QRANK_AMQP__URL": amqp_url},
        "probes": probes,
        "termination": termination,
        "queue": queue,
    }


def check_alerts(docs: list[dict], values: dict, service: dict) -> None:
    """The PrometheusRule is there iff enabled, and its alerts only name metrics and labels the
    service exports, so that a renamed metric cannot leave an alert that never fires."""
    rules = by_kind(docs, "PrometheusRule")
    expect(len(rules) == int(values["metrics"]["prometheusRule"]["enabled"]), "PrometheusRule presence")
    for rule in rules:
        alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
        expect(alerts, "the PrometheusRule has no alerts")
        for alert in alerts:
            name = alert.get("alert", "?")
            expect(alert.get("labels", {}).get("severity") in {"info", "warning", "critical"}, f"{name}: severity")
            expect(alert.get("annotations", {}).get("summary"), f"{name}: no summary")
            check_query(name, alert["expr"], service)


def check_query(name: str, expr: str, service: dict) -> None:
    """A PromQL query names at least one qrank metric, and only metrics and labels the service
    exports (a histogram's `_bucket`, `_sum` and `_count` series, and the scrape's own labels,
    included)."""
    used = set(re.findall(r"\bqrank_[a-z_]+", expr))
    expect(used, f"{name}: no qrank metric in {expr!r}")
    for metric in used:
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        expect(base in service["metric_names"], f"{name}: {metric} is not a metric of the service")
    labels = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr))
    labels = {l.strip() for group in labels for l in group.split(",") if l.strip()}
    labels |= set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
    unknown = labels - service["label_names"] - TARGET_LABELS
    expect(not unknown, f"{name}: labels {sorted(unknown)} are not the service's")


DASHBOARD = CHART / "dashboards/qrank.json"


def check_dashboard_map(docs: list[dict], values: dict) -> None:
    """The dashboard's ConfigMap is there iff enabled, with the sidecar's labels, and holds the
    chart's `dashboards/qrank.json` whole."""
    text = DASHBOARD.read_text()
    settings = values["metrics"]["grafanaDashboard"]
    maps = [d for d in by_kind(docs, "ConfigMap") if "qrank.json" in d.get("data", {})]
    expect(len(maps) == int(settings["enabled"]), "dashboard ConfigMap presence")
    for holder in maps:
        expect(holder["data"]["qrank.json"] == text.rstrip("\n"), "the ConfigMap holds the dashboard whole")
        for key, value in settings["labels"].items():
            expect(holder["metadata"]["labels"].get(key) == value, f"dashboard label {key}")


def check_dashboard(service: dict, promtool: str, rules_path: Path) -> None:
    """The dashboard file, whatever the values: it parses, its panels have unique ids, a title, a
    description and queries on the data source variable, every query (and template variable)
    names only what the service exports, so that a renamed metric cannot leave a panel that
    stays empty, and promtool parses every query (Grafana's variables given values Prometheus
    takes)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    expect(len(ids) == len(set(ids)), "dashboard panel ids repeat")
    expect(panels, "the dashboard has no panels")
    exprs = []
    for panel in panels:
        title = panel.get("title")
        expect(title and panel.get("description"), f"dashboard panel {panel['id']}: title and description")
        expect(panel["datasource"]["uid"] == "${datasource}", f"{title}: not on the data source variable")
        expect(panel.get("targets"), f"{title}: no queries")
        for target in panel["targets"]:
            check_query(f"dashboard panel {title!r}", target["expr"], service)
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            check_query(f"dashboard variable {variable['name']}", variable["definition"], service)
            # Grafana's label_values(SELECTOR, LABEL) around a series selector.
            exprs.append(re.fullmatch(r"label_values\((.*), *[a-z_]+\)", variable["definition"]).group(1))
    grafana = {"$__rate_interval": "5m", "$namespace": "default", "$pod": ".*"}
    rules = []
    for index, expr in enumerate(exprs):
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"qrank:dashboard_query_{index}", "expr": expr})
    check_rules_parse(promtool, [{"name": "dashboard", "rules": rules}], rules_path)


def check_rules_parse(promtool: str, groups: list[dict], rules_path: Path) -> None:
    """promtool parses every rule of `groups` (expressions, and alerts' annotation templates)."""
    rules_path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    out = subprocess.run([promtool, "check", "rules", str(rules_path)], capture_output=True, text=True)
    expect(out.returncode == 0, f"promtool check rules {rules_path}: {out.stdout}{out.stderr}")


def check_alert_series(groups: list[dict], exposition: str) -> None:
    """Against what the served config exports from its start: every metric an alert watches is
    there before it first moves (a counter that first appears at 1 shows no increase, so the
    alert would miss the first failure), and an alert on a histogram's quantile has its
    threshold under the largest finite bucket bound (`histogram_quantile` never reports more)."""
    exported = set(re.findall(r"^(qrank_[a-z_]+)", exposition, re.M))
    for alert in (rule for group in groups for rule in group["rules"]):
        name, expr = alert["alert"], alert["expr"]
        for metric in set(re.findall(r"\bqrank_[a-z_]+", expr)):
            expect(metric in exported, f"{name}: {metric} is not exported before it first moves")
        quantile = re.search(r"histogram_quantile\(.*\b(qrank_[a-z_]+)_bucket\b.*\)\s*>\s*([0-9.]+)", expr, re.S)
        if quantile:
            metric, threshold = quantile.group(1), float(quantile.group(2))
            bounds = re.findall(rf'^{metric}_bucket\{{le="([^"]+)"\}}', exposition, re.M)
            largest = max((float(b) for b in bounds if b != "+Inf"), default=0.0)
            expect(largest > threshold, f"{name}: {metric}'s largest bucket is {largest}, so it never exceeds {threshold}")


ALERT_TESTS = ROOT / ".ci/alerts_test.yaml"


def check_alert_tests(helm: str, promtool: str, workdir: Path) -> str:
    """promtool's unit tests of the alerts (`.ci/alerts_test.yaml`) pass on the rules rendered
    from the default values: each alert fires when it should, with its labels and summary, and
    not when it should not. Every alert must be shown firing there. The tests write the
    summaries (templates); each expected alert's description (plain text) is taken from its
    rule."""
    _, docs = render(helm, [], ["metrics.prometheusRule.enabled=true"])
    groups = [group for rule in by_kind(docs, "PrometheusRule") for group in rule["spec"]["groups"]]
    descriptions = {r["alert"]: r["annotations"]["description"] for group in groups for r in group["rules"]}
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    fired = set()
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            for alert in case.get("exp_alerts", []):
                fired.add(case["alertname"])
                alert["exp_annotations"].setdefault("description", descriptions[case["alertname"]])
    expect(fired == set(descriptions), f"alerts no test shows firing: {sorted(set(descriptions) - fired)}")
    (workdir / tests["rule_files"][0]).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    test_path = workdir / ALERT_TESTS.name
    test_path.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = subprocess.run([promtool, "test", "rules", str(test_path)], capture_output=True, text=True)
    expect(out.returncode == 0, f"promtool test rules {test_path}: {out.stdout}{out.stderr}")
    return f"{len(tests['tests'])} tests of {len(fired)} alerts"


def check_defaults(values: dict, facts: dict, service: dict) -> None:
    """The chart's defaults are the service's: queue, port, DLX, and every config key."""
    expect(facts["queue"] == service["queue"], f"default queue {facts['queue']}, the service's is {service['queue']}")
    port = int(values["config"]["http"]["listen"].rsplit(":", 1)[1])
    expect(port == service["port"], f"default port {port} differs from the service's {service['port']}")
    expect(values["service"]["port"] == service["port"], "service.port differs from the service's default port")
    expect(
        values["config"]["amqp"]["dead_letter_exchange"] == service["dead_letter_exchange"],
        "default dead-letter exchange differs from the service's",
    )
    # values.yaml lists every key the service has (the URL lives in the Secret); the binary's
    # --check-config already refuses keys the service lacks.
    chart_keys = {section: set(keys) for section, keys in values["config"].items()}
    wanted = {s: k - ({"url"} if s == "amqp" else set()) for s, k in service["config_keys"].items()}
    expect(chart_keys == wanted, f"config keys in values.yaml {chart_keys} differ from the service's {wanted}")


# ---------------------------------------------------------------------------------------------
# The binary.


def check_config(qrank: str, toml_path: Path, env: dict) -> None:
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    out = subprocess.run(
        [qrank, "serve", "--check-config", "--config", str(toml_path)], capture_output=True, text=True, env=clean_env
    )
    expect(
        out.returncode == 0,
        f"qrank serve --check-config rejected {toml_path} (exit {out.returncode}):\n{out.stdout}{out.stderr}",
    )


def get(port: int, path: str) -> tuple[int, str]:
    """The status and body of a GET on the loopback port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def check_serve(qrank: str, toml_path: Path, env: dict, facts: dict, workdir: Path) -> tuple[str, str]:
    """Start qrank serve with the rendered config and hit the chart's probe paths; returns what
    it says and its metrics' exposition."""
    log_path = workdir / (toml_path.stem + ".serve.log")
    serve_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **env,
        # A free loopback port instead of the pod's; a broker that refuses, so readiness is 503.
        "QRANK_HTTP__LISTEN": "127.0.0.1:0",
        "QRANK_AMQP__URL": "amqp://guest:guest@127.0.0.1:1/%2f",
        "QRANK_LOG__FORMAT": "json",
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen([qrank, "serve", "--config", str(toml_path)], stdout=log, stderr=log, env=serve_env)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            expect(proc.poll() is None, f"qrank serve exited with {proc.returncode}:\n{log_path.read_text()}")
            m = re.search(r'"addr":"127\.0\.0\.1:(\d+)"', log_path.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        expect(port is not None, f"qrank serve logged no address within 30 s:\n{log_path.read_text()}")
        answers = {path: get(port, path) for path in sorted(set(facts["probes"].values()) | {"/metrics"})}
        codes = {path: status for path, (status, _) in answers.items()}
        expect(codes.get("/healthz") == 200, f"liveness {codes}")
        expect(codes.get("/readyz") == 503, f"readiness without a broker should be 503: {codes}")
        expect(codes.get("/metrics") == 200, f"metrics {codes}")
        exposition = answers["/metrics"][1]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=facts["termination"])
        took = time.monotonic() - started
        expect(proc.returncode == 0, f"qrank serve exited {proc.returncode} after SIGTERM")
        return f"probes {codes}, SIGTERM -> exit in {took:.1f}s", exposition
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------


def check_refusals(helm: str, qrank: str, workdir: Path) -> None:
    """Wrong values must fail to render, and a misspelt key must fail the binary's check."""
    for sets, why in (
        (["terminationGracePeriodSeconds=30"], "must exceed config.shutdown.grace_period_secs"),
        (["autoscaling.keda.enabled=true", "autoscaling.hpa.enabled=true"], "exclusive"),
        (["config.amqp.url=amqp://u:p@h/"], "config.amqp.url must not be set"),
        (["config.http.listen=0.0.0.0:0"], "the port must be 1 to 65535"),
    ):
        out = helm_template(helm, [], sets)
        expect(
            out.returncode != 0 and why in out.stderr,
            f"the chart accepted --set {sets} (wanted an error with {why!r}): {out.stderr}",
        )
    _, docs = render(helm, [], ["config.pipeline.num_loaderz=3"])
    bad = workdir / "misspelt.toml"
    bad.write_text(config_map(docs)["data"]["qrank.toml"])
    out = subprocess.run([qrank, "serve", "--check-config", "--config", str(bad)], capture_output=True, text=True)
    expect(
        out.returncode == 64 and "num_loaderz" in out.stderr,
        f"--check-config accepted a misspelt key: {out.returncode} {out.stderr}",
    )
    # The checksum annotation must follow the configuration.
    sums = []
    for sets in ([], ["config.log.filter=debug"]):
        _, docs = render(helm, [], sets)
        sums.append(one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    expect(sums[0] != sums[1], "checksum/config does not change with the configuration")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--validator", required=True, help="the kubernetes-validate executable")
    parser.add_argument("--promtool", required=True, help="Prometheus's promtool, to parse the PromQL")
    parser.add_argument("--qrank", required=True, help="the qrank binary (target/debug/qrank)")
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # keep ok/FAIL lines in order with stderr
    args.workdir.mkdir(parents=True, exist_ok=True)
    expect(
        os.access(args.qrank, os.X_OK), f"{args.qrank} is missing: build it first (cargo build -p actors --bin qrank)"
    )

    service, docker = service_facts(), dockerfile_facts()
    cases = [("default", [])] + [
        (p.name.removesuffix("-values.yaml"), [p]) for p in sorted((CHART / "ci").glob("*-values.yaml"))
    ]
    failures = 0
    for name, files in cases:
        try:
            text, docs = render(args.helm, files)
            (args.workdir / f"{name}.yaml").write_text(text)
            skipped = validate_schemas(docs, args.validator, args.workdir, name)
            values = merged_values(files)
            facts = check_case(docs, values, service, docker)
            alerts = [group for rule in by_kind(docs, "PrometheusRule") for group in rule["spec"]["groups"]]
            if alerts:
                check_rules_parse(args.promtool, alerts, args.workdir / f"{name}.rules.yaml")
            if name == "default":
                check_defaults(values, facts, service)
            toml_path = args.workdir / f"{name}.qrank.toml"
            toml_path.write_text(facts["toml"])
            check_config(args.qrank, toml_path, facts["env"])
            served, exposition = check_serve(args.qrank, toml_path, facts["env"], facts, args.workdir)
            check_alert_series(alerts, exposition)
            kinds = sorted({d["kind"] for d in docs})
            print(
                f"ok   {name}: {len(docs)} manifests {kinds}; schemas ok "
                f"(skipped CRDs: {', '.join(skipped) or 'none'}); check-config ok; {served}"
            )
        except CheckFailed as e:
            failures += 1
            print(f"FAIL {name}: {e}", file=sys.stderr)
    try:
        check_dashboard(service, args.promtool, args.workdir / "dashboard.rules.yaml")
        print("ok   dashboard: panels, names and labels the service exports, promtool parses every query")
    except CheckFailed as e:
        failures += 1
        print(f"FAIL dashboard: {e}", file=sys.stderr)
    try:
        tested = check_alert_tests(args.helm, args.promtool, args.workdir)
        print(f"ok   alerts: promtool's unit tests pass ({tested})")
    except CheckFailed as e:
        failures += 1
        print(f"FAIL alerts: {e}", file=sys.stderr)
    try:
        check_refusals(args.helm, args.qrank, args.workdir)
        print("ok   refusals: bad values fail to render, a misspelt key fails --check-config,")
        print("     and the checksum annotation follows the config")
    except CheckFailed as e:
        failures += 1
        print(f"FAIL refusals: {e}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
