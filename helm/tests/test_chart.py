#!/usr/bin/env python3
"""Tests of the Helm chart helm/auditstream, offline (no helm binary, no cluster).

    .venv/bin/python helm/tests/test_chart.py        (from the repository root)

Renders the chart with helm-python-sdk (the Helm v4 SDK), lints it strictly, validates every
rendered manifest with kubernetes-validate's bundled schemas (--strict), and checks what the
schemas cannot: the KEDA ScaledObjects and the ServiceMonitor (custom resources), that no
secret value reaches a manifest, that values.schema.json refuses wrong values, and that the
chart README documents every value. Prints each check; exits 0 only when all pass.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import helm_python
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "auditstream"
RELEASE = "auditstream"
NAMESPACE = "audit"
# A Kubernetes version whose schemas kubernetes-validate bundles (no download at run time).
KUBE_VERSION = "1.33.0"

# Component name -> (values path, binary, default values block).
COMPONENTS = {
    "gateway": (("gateway",), "auditstream-gateway"),
    "config-service": (("configService",), "auditstream-config-service"),
    "router": (("router",), "auditstream-router"),
    "sink-s3": (("sinks", "s3"), "auditstream-sink-s3"),
    "sink-azure-blob": (("sinks", "azureBlob"), "auditstream-sink-azure-blob"),
    "sink-azure-monitor": (("sinks", "azureMonitor"), "auditstream-sink-azure-monitor"),
    "sink-http": (("sinks", "http"), "auditstream-sink-http"),
}
SINK_CONSUMERS = {
    "sink-s3": "sink-s3",
    "sink-azure-blob": "sink-azure_blob",
    "sink-azure-monitor": "sink-azure_monitor",
    "sink-http": "sink-http",
}
# Environment variables that carry secrets: only ever from a secretKeyRef.
SECRET_ENV = re.compile(r"(TOKEN|TOKENS|PASSWORD|SECRET|SECRETS__KEYS|SECRETS__ACTIVE_KEY|DATABASE__URL)$")
# The secret references each service must have: env name -> (values path of the Secret
# name, values path of the key).
EXPECTED_SECRET_ENV = {
    "gateway": {
        "AUDITSTREAM_AUTH__TOKENS": ("gateway.auth.existingSecret", "gateway.auth.tokensKey"),
    },
    "config-service": {
        "AUDITSTREAM_DATABASE__URL": ("configService.database.existingSecret", "configService.database.urlKey"),
        "AUDITSTREAM_AUTH__TOKENS": ("configService.auth.existingSecret", "configService.auth.tokensKey"),
        "AUDITSTREAM_SECRETS__ACTIVE_KEY": ("configService.encryption.existingSecret", "configService.encryption.activeKeyKey"),
        "AUDITSTREAM_SECRETS__KEYS": ("configService.encryption.existingSecret", "configService.encryption.keysKey"),
    },
}
for _name in ("router", "sink-s3", "sink-azure-blob", "sink-azure-monitor", "sink-http"):
    EXPECTED_SECRET_ENV[_name] = {
        "AUDITSTREAM_CONFIG_SERVICE__TOKEN": ("serviceToken.existingSecret", f"serviceToken.keys.{_name}"),
    }


# ----------------------------------------------------------------------------- helpers


def load_values(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


DEFAULTS = load_values(CHART / "values.yaml")


def get(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def merge(base: dict, override: dict) -> dict:
    """Helm's coalescing for plain maps: override wins, maps merge recursively."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def render(values: dict | None = None) -> list[dict]:
    """Render offline like `helm install`; every non-empty YAML document, NOTES excluded."""
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__file__"] = path
                docs.append(doc)
    return docs


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__file__"}


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def container(deploy: dict) -> dict:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deploy['metadata']['name']}: one container expected"
    return containers[0]


def leaf_paths(node, prefix="") -> list[str]:
    """Every leaf key path of a values tree; an empty map or list counts as a leaf."""
    if isinstance(node, dict) and node:
        out = []
        for k, v in node.items():
            out += leaf_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [prefix]


CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


# ----------------------------------------------------------------------------- checks


@check
def lint_strict():
    """helm lint --strict passes (default values), with the chart's kubeVersion satisfied."""
    report = helm_python.lint(CHART, strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, f"lint: {report}"
    infos = [m["error"] for m in report["messages"]]
    # ...and with each test values file that is meant to be valid.
    files = [f for f in sorted(HERE.glob("values-*.yaml")) if "wrong" not in f.name]
    for f in files:
        r = helm_python.lint(CHART, load_values(f), strict=True, kube_version=f"v{KUBE_VERSION}")
        assert not r["errors"] and not [m for m in r["messages"] if m["severity"] >= 2], f"lint {f.name}: {r}"
    return (f"lint(strict=True): 0 errors, 0 warnings with the defaults and {len(files)} values files "
            f"(info: {', '.join(infos) or 'none'})")


@check
def default_render():
    """Default values: one Deployment, ConfigMap and ServiceAccount per service, the two API
    Services plus one ops Service per service, and none of the optional objects."""
    docs = render()
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    deployments = by_kind(docs, "Deployment")
    assert sorted(deployments) == sorted(name(c) for c in COMPONENTS), sorted(deployments)
    for comp, (path, binary) in COMPONENTS.items():
        v = get(DEFAULTS, ".".join(path))
        d = deployments[name(comp)]
        c = container(d)
        assert d["spec"]["replicas"] == v["replicas"], comp
        assert c["command"] == [f"/usr/local/bin/{binary}"], (comp, c["command"])
        assert c["resources"] == v["resources"], comp
    services = by_kind(docs, "Service")
    expected_services = {name("gateway"), name("config-service")} | {name(c) + "-ops" for c in COMPONENTS}
    assert set(services) == expected_services, sorted(services)
    gw_ports = {p["name"]: p["port"] for p in services[name("gateway")]["spec"]["ports"]}
    assert gw_ports == {"http": 8080, "grpc": 50051}, gw_ports
    cs_ports = {p["name"]: p["port"] for p in services[name("config-service")]["spec"]["ports"]}
    assert cs_ports == {"grpc": 50052}, cs_ports
    ops = {n: services[n]["spec"]["ports"][0]["port"] for n in services if n.endswith("-ops")}
    assert ops[name("gateway-ops")] == 9090 and ops[name("config-service-ops")] == 9091
    assert ops[name("router-ops")] == 9092 and ops[name("sink-s3-ops")] == 9093
    for optional in ("HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget",
                     "ServiceMonitor", "NetworkPolicy", "Secret"):
        assert optional not in kinds, f"{optional} rendered by default"
    assert kinds == {"ConfigMap": 8, "Deployment": 7, "Service": 9, "ServiceAccount": 7}, kinds
    return "default values: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


@check
def pods_hardened_and_probed():
    """Every pod: non-root, read-only root, no capabilities, RuntimeDefault seccomp, ops-port
    probes on /healthz and /readyz, and a grace period above the services' shutdown grace."""
    docs = render()
    grace = DEFAULTS["shutdownGraceSeconds"]
    common = by_kind(docs, "ConfigMap")[name("common-env")]["data"]
    assert common["AUDITSTREAM_SHUTDOWN_GRACE"] == f"{grace}s", common
    for d in by_kind(docs, "Deployment").values():
        n = d["metadata"]["name"]
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        assert pod["securityContext"]["runAsNonRoot"] is True, n
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", n
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], n
        assert sc["allowPrivilegeEscalation"] is False, n
        assert sc["capabilities"]["drop"] == ["ALL"], n
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", n
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}, n
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}, n
        assert "ops" in ports, n
        assert pod["terminationGracePeriodSeconds"] > grace, n
        assert pod["automountServiceAccountToken"] is False, n
        assert pod["serviceAccountName"] == n, n
        volumes = {v["name"] for v in pod.get("volumes", [])}
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        assert mounts <= volumes, f"{n}: mounts without a volume: {mounts - volumes}"
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{n}: no writable /tmp"
        # The ops address the service binds is the port the probes use.
        comp_cm = by_kind(docs, "ConfigMap")[n + "-env"]["data"]
        assert comp_cm["AUDITSTREAM_OPS_ADDR"] == f"0.0.0.0:{ports['ops']}", n
    return f"7 Deployments: hardened securityContext, /healthz + /readyz on ops, grace > {grace}s"


@check
def s3_keda_values():
    """values-s3-keda.yaml: sink-s3 at 5 replicas with a ScaledObject on its JetStream consumer
    and no HPA; every other Deployment exactly as with the defaults."""
    override = load_values(HERE / "values-s3-keda.yaml")
    docs = render(override)
    default_docs = render()
    deployments = by_kind(docs, "Deployment")
    assert deployments[name("sink-s3")]["spec"]["replicas"] == 5
    scaled = by_kind(docs, "ScaledObject")
    assert list(scaled) == [name("sink-s3")], f"ScaledObjects: {sorted(scaled)}"
    so = scaled[name("sink-s3")]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"]["name"] == name("sink-s3")
    assert so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert so["spec"]["minReplicaCount"] >= 1
    assert so["spec"]["maxReplicaCount"] == 20
    triggers = so["spec"]["triggers"]
    assert len(triggers) == 1 and triggers[0]["type"] == "nats-jetstream", triggers
    meta = triggers[0]["metadata"]
    assert meta["stream"] == "AUDIT_DELIVER", meta
    assert meta["consumer"] == "sink-s3", meta
    assert meta["lagThreshold"] == "2000", meta
    assert meta["account"] == "$G", meta
    assert re.fullmatch(r"[A-Za-z0-9.-]+:\d+", meta["natsServerMonitoringEndpoint"]), meta
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values must be strings"
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert name("sink-s3") not in hpas, "an HPA beside KEDA's"
    assert not hpas, f"unexpected HPAs: {sorted(hpas)}"
    # The sink's consumer name is also what the sink is told to use.
    cm = by_kind(docs, "ConfigMap")[name("sink-s3-env")]["data"]
    assert cm["AUDITSTREAM_CONSUMER__DURABLE_NAME"] == "sink-s3", cm
    default_deployments = by_kind(default_docs, "Deployment")
    for n, d in deployments.items():
        if n != name("sink-s3"):
            assert strip(d) == strip(default_deployments[n]), f"{n} differs from its default"
    return ("values-s3-keda.yaml: sink-s3 replicas 5, ScaledObject nats-jetstream "
            f"AUDIT_DELIVER/sink-s3 lagThreshold {meta['lagThreshold']}, no HPA; 6 other Deployments unchanged")


@check
def all_features_render():
    """values-all-features.yaml: every optional object, with the fields the custom resources
    (not checked by kubernetes-validate) must have."""
    override = load_values(HERE / "values-all-features.yaml")
    docs = render(override)
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {name("gateway"), name("sink-s3")}, sorted(hpas)
    assert hpas[name("gateway")]["spec"]["minReplicas"] == 3
    assert hpas[name("gateway")]["spec"]["maxReplicas"] == 12
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {name("router"), name("sink-azure-blob")}, sorted(scaled)
    r = scaled[name("router")]["spec"]["triggers"][0]
    assert r["type"] == "nats-jetstream" and r["metadata"]["stream"] == "AUDIT_INGEST"
    assert r["metadata"]["consumer"] == "router"
    b = scaled[name("sink-azure-blob")]["spec"]
    assert b["triggers"][0]["metadata"]["consumer"] == SINK_CONSUMERS["sink-azure-blob"]
    assert b["minReplicaCount"] == 2
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert pdbs[name("gateway")]["spec"] == {"minAvailable": 1, "selector": pdbs[name("gateway")]["spec"]["selector"]}
    assert pdbs[name("config-service")]["spec"]["maxUnavailable"] == "50%"
    sm = by_kind(docs, "ServiceMonitor")[RELEASE]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "ops", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert sm["spec"]["selector"]["matchLabels"]["auditstream.io/ops"] == "true"
    ops_services = [s for s in by_kind(docs, "Service").values()
                    if s["metadata"]["labels"].get("auditstream.io/ops") == "true"]
    assert len(ops_services) == 7 and all(s["spec"]["ports"][0]["name"] == "ops" for s in ops_services)
    nps = by_kind(docs, "NetworkPolicy")
    assert len(nps) == 7 and all(np["spec"]["policyTypes"] == ["Ingress"] for np in nps.values())
    gw_np = nps[name("gateway")]["spec"]["ingress"]
    assert {p["port"] for p in gw_np[0]["ports"]} == {8080, 50051}
    assert [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for f in gw_np[0]["from"]] == ["producers", "ingress-nginx"]
    deployments = by_kind(docs, "Deployment")
    blob = deployments[name("sink-azure-blob")]["spec"]["template"]["metadata"]["labels"]
    assert blob["azure.workload.identity/use"] == "true"
    sas = by_kind(docs, "ServiceAccount")
    assert sas[name("sink-s3")]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert sas[name("sink-azure-blob")]["metadata"]["annotations"]["azure.workload.identity/client-id"]
    for d in deployments.values():
        ann = d["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    cms = by_kind(docs, "ConfigMap")
    common = cms[name("common-env")]["data"]
    # Large integers survive Helm's float64 numbers.
    assert common["AUDITSTREAM_NATS__TOPOLOGY__BACKLOG__MAX_BYTES"] == "34359738368", common
    assert common["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector")
    assert "AUDITSTREAM_NATS__URL" not in common, "NATS URL must come from its Secret"
    assert cms[name("config-service-env")]["data"]["AUDITSTREAM_NOTIFICATIONS__SMTP_HOST"] == "smtp.example.com"
    assert cms[name("config-service-env")]["data"]["AUDITSTREAM_NOTIFICATIONS__CLAIM_LEASE"] == "10m"
    assert cms[name("config-service-env")]["data"]["AUDITSTREAM_SNAPSHOT_PAGE_BYTES"] == "524288"
    env = {e["name"]: e for e in container(deployments[name("config-service")])["env"]}
    assert env["AUDITSTREAM_NOTIFICATIONS__SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "auditstream-smtp", "key": "password"}
    assert env["AUDITSTREAM_NATS__URL"]["valueFrom"]["secretKeyRef"] == {"name": "auditstream-nats", "key": "url"}
    # Each component its own NATS user, and the users block for the NATS servers as generated
    # from crates/bus/src/permissions.rs.
    for comp in COMPONENTS:
        env = {e["name"]: e for e in container(deployments[name(comp)])["env"]}
        assert env["AUDITSTREAM_NATS__USER"]["value"] == "auditstream_" + comp.replace("-", "_"), comp
        assert env["AUDITSTREAM_NATS__PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "auditstream-nats-users", "key": f"{comp}-password"}, comp
    users = cms[name("nats-authorization")]["data"]["authorization.conf"]
    assert users == (CHART / "files" / "nats-authorization.conf").read_text(), "users block differs from the generated file"
    for comp in COMPONENTS:
        assert f'user: "auditstream_{comp.replace("-", "_")}"' in users, comp
    kinds = sorted({d["kind"] for d in docs})
    return f"values-all-features.yaml: {len(docs)} objects ({', '.join(kinds)}); CRD fields checked"


@check
def kubernetes_validate_strict():
    """Every manifest of every test rendering passes kubernetes-validate --strict against the
    bundled Kubernetes schemas; custom resources have no bundled schema (checked above)."""
    renderings = {"defaults": {}}
    for f in sorted(HERE.glob("values-*.yaml")):
        if "wrong" not in f.name:
            renderings[f.name] = load_values(f)
    validated, custom = 0, set()
    for label, values in renderings.items():
        for doc in render(values):
            res = strip(doc)
            try:
                kubernetes_validate.validate(res, KUBE_VERSION, strict=True)
                validated += 1
            except kubernetes_validate.SchemaNotFoundError:
                assert res["kind"] in ("ScaledObject", "ServiceMonitor"), f"no schema for {res['kind']}"
                custom.add(res["kind"])
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                raise AssertionError(f"{label}: {res['kind']}/{res['metadata']['name']}: {where}: {e.message}")
    # The command line tool, as CI would run it, on the all-features rendering.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifests.yaml"
        path.write_text(yaml.safe_dump_all([strip(d) for d in render(load_values(HERE / "values-all-features.yaml"))]))
        cli = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                              "--kubernetes-version", KUBE_VERSION, str(path)],
                             capture_output=True, text=True)
        assert cli.returncode == 0 and "ERROR" not in cli.stdout, cli.stdout + cli.stderr
    return (f"kubernetes-validate {kubernetes_validate.__version__} --strict (k8s {KUBE_VERSION}, bundled schemas): "
            f"{validated} manifests valid in {len(renderings)} renderings; CLI exit 0; "
            f"custom resources checked by hand: {', '.join(sorted(custom))}")


@check
def schema_rejects_wrong_values():
    """values.schema.json refuses wrong values at render and lint time, naming the field."""
    wrong = load_values(HERE / "values-wrong-type.yaml")
    try:
        render(wrong)
    except helm_python.HelmValuesError as e:
        assert "/gateway/replicas" in str(e), str(e)
        first = str(e).strip().splitlines()[-1]
    else:
        raise AssertionError("values-wrong-type.yaml rendered")
    report = helm_python.lint(CHART, wrong, strict=True)
    assert any("/gateway/replicas" in err for err in report["errors"]), report
    cases = {
        "negative replicas": ({"sinks": {"http": {"replicas": -1}}}, "/sinks/http/replicas"),
        "unknown key": ({"gateway": {"replicaCount": 3}}, "replicaCount"),
        "unknown top-level key": ({"sink": {}}, "sink"),
        "log format enum": ({"log": {"format": "xml"}}, "/log/format"),
        "resources shape": ({"router": {"resources": {"request": {"cpu": "1"}}}}, "/router/resources"),
        "resources quantity": ({"router": {"resources": {"limits": {"memory": "lots"}}}}, "/router/resources/limits/memory"),
        "service type enum": ({"gateway": {"service": {"type": "Ingress"}}}, "/gateway/service/type"),
        "KEDA never at zero": ({"sinks": {"s3": {"keda": {"minReplicaCount": 0}}}}, "/sinks/s3/keda/minReplicaCount"),
        "port range": ({"gateway": {"ports": {"http": 70000}}}, "/gateway/ports/http"),
        "secret in env": ({"gateway": {"env": {"AUDITSTREAM_AUTH__TOKENS": "x" * 20}}}, "/gateway/env/AUDITSTREAM_AUTH__TOKENS"),
        "chart-managed env": ({"router": {"env": {"AUDITSTREAM_OPS_ADDR": "0.0.0.0:1"}}}, "/router/env/AUDITSTREAM_OPS_ADDR"),
        "env name": ({"router": {"env": {"RUST_LOG": "debug"}}}, "/router/env"),
        "secret name": ({"serviceToken": {"existingSecret": "Not A Name"}}, "/serviceToken/existingSecret"),
        "topology replicas": ({"nats": {"topology": {"replicas": 7}}}, "/nats/topology/replicas"),
        "NATS URL": ({"nats": {"url": "http://nats:4222"}}, "/nats/url"),
    }
    for label, (values, field) in cases.items():
        try:
            render(values)
        except helm_python.HelmValuesError as e:
            assert field in str(e), f"{label}: error does not name {field}: {e}"
        else:
            raise AssertionError(f"{label}: accepted {values}")
    return f"values-wrong-type.yaml refused ({first.strip()}); {len(cases)} more wrong values refused by name"


@check
def template_rejects_inconsistent_values():
    """Relations the schema cannot express stop the render with a message."""
    cases = {
        "grace below shutdown": ({"router": {"terminationGracePeriodSeconds": 12}}, "router.terminationGracePeriodSeconds"),
        "KEDA at zero via replicas": ({"sinks": {"http": {"replicas": 0, "keda": {"enabled": True}}}}, "sinks.http.keda"),
        "HPA min above max": ({"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "gateway.autoscaling"),
        "no config service": ({"configService": {"enabled": False}}, "configServiceUrl"),
    }
    for label, (values, text) in cases.items():
        try:
            render(values)
        except helm_python.HelmError as e:
            assert text in str(e), f"{label}: {e}"
        else:
            raise AssertionError(f"{label}: rendered")
    return f"{len(cases)} inconsistent combinations refused by the templates"


@check
def no_secret_values():
    """No Secret objects, no secret-named variable in a ConfigMap, every secret-named env var
    from a secretKeyRef to the Secret and key named in values, and values.yaml holds no value
    under a secret-looking key."""
    checked = 0
    for label, override in [("defaults", {}), ("all-features", load_values(HERE / "values-all-features.yaml"))]:
        values = merge(DEFAULTS, override)
        docs = render(override)
        assert not [d for d in docs if d["kind"] == "Secret"], f"{label}: a Secret is rendered"
        for cm in by_kind(docs, "ConfigMap").values():
            for key in cm.get("data", {}):
                assert not SECRET_ENV.search(key), f"{label}: {key} in ConfigMap {cm['metadata']['name']}"
        for comp, expected in EXPECTED_SECRET_ENV.items():
            c = container(by_kind(docs, "Deployment")[name(comp)])
            env = {e["name"]: e for e in c.get("env", [])}
            for var, e in env.items():
                if SECRET_ENV.search(var) or var == "AUDITSTREAM_NATS__URL":
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{label}: {comp} {var} not from a Secret"
            for var, (secret_path, key_path) in expected.items():
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": get(values, secret_path), "key": get(values, key_path)}, (comp, var, ref)
                checked += 1
    # values.yaml names Secrets and keys but never holds a secret itself: no key named like a
    # secret, no URL with credentials.
    for path in leaf_paths(DEFAULTS):
        last = path.split(".")[-1]
        value = get(DEFAULTS, path)
        assert not re.fullmatch(r"(?i)(password|passwd|token|tokens|secret|secrets|apiKey|accessKey|"
                                r"secretKey|databaseUrl|connectionString)", last), f"values.yaml {path}"
        assert not (isinstance(value, str) and re.search(r"://[^/@\s]*:[^/@\s]*@", value)), f"values.yaml {path}: credentials in a URL"
    return f"no Secret rendered, no secret in a ConfigMap, {checked} secretKeyRefs match the values"


@check
def readme_documents_every_value():
    """The chart README names every leaf key path of values.yaml (as `path`)."""
    readme = (CHART / "README.md").read_text()
    paths = leaf_paths(DEFAULTS)
    missing = [p for p in paths if f"`{p}`" not in readme]
    assert not missing, f"{len(missing)} values missing from helm/auditstream/README.md: {missing}"
    return f"{len(paths)} leaf values all documented in helm/auditstream/README.md"


def main() -> int:
    os.chdir(HERE.parent.parent)
    print(f"chart {CHART.relative_to(Path.cwd())}: helm-python-sdk {helm_python.__version__} "
          f"(Helm SDK {helm_python.helm_sdk_version()}), kubernetes-validate {kubernetes_validate.__version__}")
    failed = 0
    for fn in CHECKS:
        try:
            summary = fn()
            print(f"ok    {fn.__name__}: {summary}")
        except Exception as e:  # noqa: BLE001 - report every failure, then exit 1
            failed += 1
            print(f"FAIL  {fn.__name__}: {fn.__doc__.strip().splitlines()[0]}")
            if isinstance(e, AssertionError):
                print(f"      {e}")
            else:
                traceback.print_exc()
    print(f"{len(CHECKS) - failed} of {len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
