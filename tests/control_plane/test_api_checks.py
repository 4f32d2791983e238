"""What only an API server can answer, on the release `make deploy` installs (k8s/values/login-stream.yaml,
NetworkPolicy on) in namespace login-stream, labelled to enforce the restricted Pod Security Standard:

- the ServiceMonitor selects the metrics Services by label and finds its port on them, and the
  EndpointSlice controller turns them into ready endpoints (what prometheus-operator scrapes);
- the ServiceMonitor, PrometheusRule, PodMonitors and dashboard ConfigMaps are found by the selectors
  kube-prometheus-stack derives from k8s/values/kube-prometheus-stack.yaml;
- each ServiceAccount of the pods can do what they need (nothing: no pod talks to the API) and no more;
- the NetworkPolicy admits Prometheus (by namespace) and reaches Kafka and DNS (by pod labels), and
  nothing else, judged by the API server's own label-selector matching on stand-in pods.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.control_plane.conftest import (
    DEPLOY_NAMESPACE,
    ROOT,
    Cluster,
    delete_namespace,
    impersonating,
    manifests,
    namespace,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

RELEASE = NAMESPACE = DEPLOY_NAMESPACE
KPS_VALUES = yaml.safe_load((ROOT / "k8s/values/kube-prometheus-stack.yaml").read_text())


def kps_release() -> str:
    """The release name `make cluster` gives kube-prometheus-stack (its selectors use it)."""
    found = re.search(r"upgrade --install (\S+) kube-prometheus-stack ", (ROOT / "mk/k8s.mk").read_text())
    assert found, "mk/k8s.mk no longer installs kube-prometheus-stack with `helm upgrade --install NAME`"
    return found.group(1)


def selector_string(selector: dict[str, Any]) -> str:
    """A metav1.LabelSelector as the ?labelSelector= query string the API server evaluates."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


# --- ServiceMonitor -> Services -> pods -> EndpointSlices --------------------------------------------


def test_service_monitor_selects_the_metrics_services_and_their_port(
    api: Any, deployed: list[dict[str, Any]]
) -> None:
    from kubernetes import client

    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    (sm,) = of_kind(deployed, "ServiceMonitor")
    spec = sm["spec"]
    namespaces = spec["namespaceSelector"].get("matchNames") or [NAMESPACE]
    selected = [
        s
        for ns in namespaces
        for s in core.list_namespaced_service(ns, label_selector=selector_string(spec["selector"])).items
    ]
    shipped = {s["metadata"]["name"] for s in of_kind(deployed, "Service")}
    assert {s.metadata.name for s in selected} == shipped, (
        "the ServiceMonitor must select every metrics Service"
    )
    deployments = {d["metadata"]["name"]: d for d in of_kind(deployed, "Deployment")}
    for service in selected:
        assert spec["jobLabel"] in service.metadata.labels, (
            f"{service.metadata.name}: no {spec['jobLabel']} label"
        )
        ports = {p.name: p for p in service.spec.ports}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in ports, f"{service.metadata.name} has no port named {endpoint['port']}"
            port = ports[endpoint["port"]]
            pods = core.list_namespaced_pod(
                service.metadata.namespace,
                label_selector=selector_string({"matchLabels": service.spec.selector}),
            ).items
            assert pods, f"Service {service.metadata.name} selects no pod"
            for pod in pods:
                named = {p.name: p.container_port for c in pod.spec.containers for p in c.ports or []}
                assert port.target_port in named, f"pod {pod.metadata.name} has no port {port.target_port}"
            replicas = next(
                d["spec"].get("replicas", 1) for d in deployments.values() if _selects(service, d)
            )
            number = {p.name: p.container_port for c in pods[0].spec.containers for p in c.ports or []}[
                port.target_port
            ]

            def ready_endpoints(
                svc: Any = service, name: str = endpoint["port"], number: int = number
            ) -> int:
                slices = discovery.list_namespaced_endpoint_slice(
                    svc.metadata.namespace, label_selector=f"kubernetes.io/service-name={svc.metadata.name}"
                ).items
                count = 0
                for s in slices:
                    if any(p.name == name and p.port == number for p in s.ports or []):
                        count += sum(1 for e in s.endpoints or [] if e.conditions.ready)
                return count

            wait_for(
                f"{replicas} ready endpoints of {service.metadata.name}:{endpoint['port']}",
                lambda f=ready_endpoints, n=replicas: f() == n,  # type: ignore[misc]
                60,
            )


def _selects(service: Any, deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return bool(service.spec.selector.items() <= labels.items())


# --- kube-prometheus-stack's selectors ---------------------------------------------------------------


def kps_selector(kind: str) -> dict[str, Any]:
    """The selector kube-prometheus-stack writes into its Prometheus for ``kind`` (serviceMonitor,
    podMonitor, rule) from k8s/values. Source: kube-prometheus-stack 88.2.0,
    templates/prometheus/prometheus.yaml: an explicit prometheusSpec.<kind>Selector wins; else, when
    <kind>SelectorNilUsesHelmValues is true, matchLabels {release: <its release name>}; else {} (all)."""
    spec = KPS_VALUES["prometheus"]["prometheusSpec"]
    if spec.get(f"{kind}Selector"):
        return dict(spec[f"{kind}Selector"])
    if spec.get(f"{kind}SelectorNilUsesHelmValues", True):  # the chart's default is true
        return {"matchLabels": {"release": kps_release()}}
    return {}


def selected_across(api: Any, plural: str, selector: dict[str, Any]) -> set[tuple[str, str]]:
    from kubernetes import client

    items = client.CustomObjectsApi(api).list_cluster_custom_object(
        "monitoring.coreos.com", "v1", plural, label_selector=selector_string(selector)
    )["items"]
    return {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}


@pytest.mark.parametrize(
    ("kind", "plural", "nil_selector"),
    [("ServiceMonitor", "servicemonitors", "serviceMonitor"), ("PrometheusRule", "prometheusrules", "rule")],
)
def test_kube_prometheus_stack_selects_the_release_monitoring_objects(
    api: Any, deployed: list[dict[str, Any]], kind: str, plural: str, nil_selector: str
) -> None:
    spec = KPS_VALUES["prometheus"]["prometheusSpec"]
    assert spec.get(f"{nil_selector}NamespaceSelector") == {}, "k8s/values select these in every namespace"
    shipped = {
        (o["metadata"].get("namespace", NAMESPACE), o["metadata"]["name"]) for o in of_kind(deployed, kind)
    }
    assert shipped, f"the release ships no {kind}"
    assert shipped <= selected_across(api, plural, kps_selector(nil_selector))


def test_kube_prometheus_stack_selects_the_kafka_pod_monitors(api: Any, cluster: Cluster) -> None:
    monitors = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in cluster.objects
        if o["kind"] == "PodMonitor"
    }
    assert monitors
    assert monitors <= selected_across(api, "podmonitors", kps_selector("podMonitor"))


def test_grafana_sidecar_finds_every_dashboard_configmap(api: Any, deployed: list[dict[str, Any]]) -> None:
    """Grafana's sidecar (k8s/values/kube-prometheus-stack.yaml grafana.sidecar.dashboards) lists ConfigMaps
    by label=labelValue in searchNamespace (ALL: every namespace) and files them under folderAnnotation."""
    from kubernetes import client

    sidecar = KPS_VALUES["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    selector = f"{sidecar['label']}={sidecar['labelValue']}"
    core = client.CoreV1Api(api)
    if sidecar.get("searchNamespace") == "ALL":
        found = core.list_config_map_for_all_namespaces(label_selector=selector).items
    else:
        found = core.list_namespaced_config_map("monitoring", label_selector=selector).items
    found_names = {(c.metadata.namespace, c.metadata.name): c for c in found}
    dashboards = [
        c for c in of_kind(deployed, "ConfigMap") if any(k.endswith(".json") for k in c.get("data", {}))
    ]
    assert dashboards, "the release ships no dashboard ConfigMap"
    for cm in dashboards:
        key = (cm["metadata"].get("namespace", NAMESPACE), cm["metadata"]["name"])
        assert key in found_names, f"ConfigMap {key} is not selected by {selector}"
        assert sidecar["folderAnnotation"] in (found_names[key].metadata.annotations or {})


# --- ServiceAccounts: what the pods need, and no more ------------------------------------------------

# Rules every authenticated identity has from the API server's bootstrap policy (Kubernetes 1.37:
# system:basic-user's self reviews, and reading the public ClusterTrustBundles).
DEFAULT_RESOURCE_RULES = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("certificates.k8s.io", "clustertrustbundles"),
}
SENSITIVE = [
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("list", "", "configmaps"),
    ("list", "", "pods"),
    ("create", "", "pods"),
    ("create", "", "pods/exec"),
    ("patch", "apps", "deployments"),
    ("delete", "", "services"),
    ("list", "kafka.strimzi.io", "kafkas"),
    ("create", "", "serviceaccounts/token"),
]


def pod_service_accounts(api: Any, ns: str, selector: str) -> set[str]:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
    assert pods, f"no pods for {selector} in {ns}"
    for pod in pods:
        assert pod.spec.automount_service_account_token is False, f"{pod.metadata.name} mounts an API token"
        mounted = [
            v.name for v in pod.spec.volumes or [] if v.projected and v.name.startswith("kube-api-access")
        ]
        assert not mounted, f"{pod.metadata.name} has an API token volume {mounted}"
    return {p.spec.service_account_name for p in pods}


@pytest.mark.parametrize(
    "selector",
    [f"app.kubernetes.io/instance={RELEASE}", "app.kubernetes.io/name=kafdrop"],
    ids=["chart", "kafdrop"],
)
def test_service_accounts_can_do_nothing_beyond_discovery(
    api: Any, deployed: list[dict[str, Any]], dynamic: Any, selector: str
) -> None:
    from kubernetes import client

    if "kafdrop" in selector:
        from tests.control_plane.conftest import apply

        for obj in manifests("k8s/ui/kafdrop.yaml"):
            apply(dynamic, obj)
        wait_for(
            "Kafdrop pods",
            lambda: client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=selector).items,
        )
    assert not of_kind(deployed, "Role"), "the chart grants nothing"
    assert not of_kind(deployed, "RoleBinding"), "the chart grants nothing"
    for sa in pod_service_accounts(api, NAMESPACE, selector):
        as_sa = client.AuthorizationV1Api(impersonating(api, f"system:serviceaccount:{NAMESPACE}:{sa}"))
        rules = as_sa.create_self_subject_rules_review(
            {"spec": {"namespace": NAMESPACE}}
        ).status.resource_rules
        granted = {(g, r) for rule in rules for g in rule.api_groups or [""] for r in rule.resources or []}
        assert granted <= DEFAULT_RESOURCE_RULES, (
            f"{sa} may do more than its pods need: {granted - DEFAULT_RESOURCE_RULES}"
        )
        for verb, group, path in SENSITIVE:
            resource, _, sub = path.partition("/")
            attrs = {
                "namespace": NAMESPACE,
                "verb": verb,
                "group": group,
                "resource": resource,
                "subresource": sub,
            }
            review = as_sa.create_self_subject_access_review({"spec": {"resourceAttributes": attrs}})
            assert review.status.allowed is False, f"{sa} can {verb} {group}/{resource}"


# --- NetworkPolicy, judged by the API server's selector matching -------------------------------------

# Stand-ins labelled as the real pods are. Prometheus: prometheus-operator v0.93.0 labels the pods of
# Prometheus "kube-prometheus-stack-prometheus" app.kubernetes.io/name=prometheus and
# prometheus=<name>. Kafka: Strimzi 1.2.0 labels broker pods strimzi.io/cluster=<cluster>,
# strimzi.io/kind=Kafka, strimzi.io/name=<cluster>-kafka, strimzi.io/pool-name=<pool>,
# strimzi.io/broker-role=true. DNS: CoreDNS as kind deploys it, k8s-app=kube-dns in kube-system.
STAND_INS = {
    "prometheus": (
        "monitoring",
        {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus"},
    ),
    "kafka": (
        NAMESPACE,
        {
            "strimzi.io/cluster": "login-stream",
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": "login-stream-kafka",
            "strimzi.io/pool-name": "dual-role",
            "strimzi.io/broker-role": "true",
        },
    ),
    "dns": ("kube-system", {"k8s-app": "kube-dns"}),
    "stranger": ("ls-stranger", {"app.kubernetes.io/name": "prometheus"}),
}


def stand_in(api: Any, name: str, ns: str, labels: dict[str, str]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    pod = {
        "metadata": {"name": f"stand-in-{name}", "labels": labels},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "c",
                    "image": "registry.invalid/stand-in:1",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    try:
        client.CoreV1Api(api).create_namespaced_pod(ns, pod)
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture(scope="module")
def stand_ins(api: Any, deployed: list[dict[str, Any]]) -> Iterator[dict[str, tuple[str, str]]]:
    from kubernetes import client

    created = {}
    for name, (ns, labels) in STAND_INS.items():
        namespace(api, ns)
        stand_in(api, name, ns, labels)
        created[name] = (ns, f"stand-in-{name}")
    yield created
    core = client.CoreV1Api(api)
    for ns, pod in created.values():
        core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    delete_namespace(api, "ls-stranger")


def peers(api: Any, policy_ns: str, peer_list: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, pod) of every pod the NetworkPolicy peers select, by the API server's matching."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    out: set[tuple[str, str]] = set()
    for peer in peer_list:
        if "namespaceSelector" in peer:
            selected = core.list_namespace(label_selector=selector_string(peer["namespaceSelector"])).items
            namespaces = [n.metadata.name for n in selected]
        else:
            namespaces = [policy_ns]
        pod_selector = selector_string(peer.get("podSelector") or {})
        for ns in namespaces:
            out |= {
                (ns, p.metadata.name) for p in core.list_namespaced_pod(ns, label_selector=pod_selector).items
            }
    return out


def rule_ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), int(p["port"])) for p in rule.get("ports") or []}


def test_network_policy_admits_prometheus_and_reaches_kafka_and_dns(
    api: Any, deployed: list[dict[str, Any]], stand_ins: dict[str, tuple[str, str]], cluster: Cluster
) -> None:
    from kubernetes import client

    (policy,) = of_kind(deployed, "NetworkPolicy")
    spec = policy["spec"]
    core = client.CoreV1Api(api)
    guarded = core.list_namespaced_pod(NAMESPACE, label_selector=selector_string(spec["podSelector"])).items
    metrics_ports = {
        ("TCP", p.container_port) for pod in guarded for c in pod.spec.containers for p in c.ports or []
    }
    assert guarded, "the policy guards no pod of the release"
    assert metrics_ports, "the guarded pods declare no port"
    # ingress: Prometheus (any pod of the monitoring namespace) on every metrics port; no stranger
    admitted: set[tuple[str, str]] = set()
    for rule in spec["ingress"]:
        if metrics_ports <= rule_ports(rule):
            admitted |= peers(api, NAMESPACE, rule["from"])
    assert stand_ins["prometheus"] in admitted
    assert stand_ins["stranger"] not in admitted
    assert stand_ins["kafka"] not in admitted
    # egress: the Kafka brokers on the port the release connects to (a listener of the Kafka CR), and DNS
    kafka = next(o for o in cluster.objects if o["kind"] == "Kafka")
    consumer = next(d for d in of_kind(deployed, "Deployment") if d["metadata"]["name"].endswith("-consumer"))
    env = {e["name"]: e.get("value") for e in consumer["spec"]["template"]["spec"]["containers"][0]["env"]}
    port = int(env["BOOTSTRAP_SERVERS"].split(",")[0].rpartition(":")[2])
    assert port in {x["port"] for x in kafka["spec"]["kafka"]["listeners"]}, f"no Kafka listener on {port}"
    reachable = {
        (peer, port)
        for rule in spec["egress"]
        for peer in peers(api, NAMESPACE, rule["to"])
        for port in rule_ports(rule)
    }
    assert (stand_ins["kafka"], ("TCP", port)) in reachable
    assert (stand_ins["dns"], ("UDP", 53)) in reachable
    assert not {p for p, _ in reachable} & {stand_ins["stranger"], stand_ins["prometheus"]}
