"""The Helm chart, checked without a cluster: lint, render, validate every manifest against the
Kubernetes 1.37 schemas (strict: a misspelt field fails), then the properties a user relies on."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from ingest import jobs
from ingest.operator.podspec import POOL_WORKER, WORKER
from tests.chart.render import (
    CHART,
    CREDENTIALS,
    EVERYTHING_ON,
    REPO,
    Manifest,
    config_map,
    helm,
    named,
    of_kind,
    pod_specs,
    render,
)

VALUES = {"default": (), "everything-on": (EVERYTHING_ON,)}


@pytest.fixture(scope="module", params=sorted(VALUES))
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(*VALUES[request.param])


@pytest.mark.parametrize("values", sorted(VALUES))
def test_lint(values: str) -> None:
    args = [arg for path in VALUES[values] for arg in ("--values", str(path))]
    result = helm("lint", "--strict", str(CHART), *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_valid_kubernetes(manifests: list[Manifest]) -> None:
    schemas = {
        (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]): version["schema"]["openAPIV3Schema"]
        for crd in of_kind(manifests, "CustomResourceDefinition") for version in crd["spec"]["versions"]
    }
    for doc in manifests:
        group, _, version = doc["apiVersion"].rpartition("/")
        if (group, version, doc["kind"]) in schemas:
            # A custom resource: checked against the CRD the chart installs.
            jsonschema.validate(doc, schemas[group, version, doc["kind"]])
        elif group == "monitoring.coreos.com":
            # Prometheus Operator kinds: their CRDs are not ours to ship; check the fields we rely on.
            assert doc["kind"] in {"ServiceMonitor", "PodMonitor"} and doc["spec"]["selector"]["matchLabels"]
        else:
            kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_crd_is_crds_ingestjob_yaml_itself(tmp_path: Path) -> None:
    """One source: the chart links to crds/, and `helm package` ships the linked file's bytes."""
    link = CHART / "crds" / "ingestjob.yaml"
    assert link.is_symlink() and link.resolve() == REPO / "crds" / "ingestjob.yaml"
    result = helm("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("ingest-*.tgz")
    with tarfile.open(package) as archive:
        member = archive.extractfile("ingest/crds/ingestjob.yaml")
        assert member is not None and member.read() == (REPO / "crds" / "ingestjob.yaml").read_bytes()


def test_every_pod_is_probed_confined_and_sized(manifests: list[Manifest]) -> None:
    for name, spec in pod_specs(manifests).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            where = f"{name} container {container['name']}"
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            }, where
            assert container["livenessProbe"]["httpGet"] and container["readinessProbe"]["httpGet"], where
            assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_probes_use_the_real_health_endpoints(manifests: list[Manifest]) -> None:
    api = pod_specs(manifests)["Deployment/ingest-api"]["containers"][0]
    assert api["command"] == ["python", "-m", "ingest.api"]
    assert (api["livenessProbe"]["httpGet"]["path"],
            api["readinessProbe"]["httpGet"]["path"]) == ("/healthz", "/readyz")
    assert api["ports"][0]["containerPort"] == int(config_map(manifests)["INGEST_API_PORT"])
    operator = pod_specs(manifests)["Deployment/ingest-operator"]["containers"][0]
    assert operator["command"] == ["python", "-m", "ingest.operator"]
    port = operator["ports"][0]["containerPort"]
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in operator["args"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_credentials_come_from_a_secret_never_from_values_in_pod_specs(manifests: list[Manifest]) -> None:
    secret = config_map(manifests)["INGEST_WORKER_SECRET"]
    for name, spec in pod_specs(manifests).items():
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert "value" not in env or env["name"] not in CREDENTIALS | {"MINIO_ROOT_USER",
                                                                               "MINIO_ROOT_PASSWORD"}, name
    for component in ("api", "operator"):
        container = pod_specs(manifests)[f"Deployment/ingest-{component}"]["containers"][0]
        assert {"secretRef": {"name": secret}} in container["envFrom"]
    created = [doc for doc in of_kind(manifests, "Secret") if doc["metadata"]["name"] == secret]
    if created:  # the chart's own Secret: exactly the keys worker Pods load with envFrom
        assert set(created[0]["data"]) == CREDENTIALS


def test_existing_secrets_are_used_not_created() -> None:
    manifests = render(EVERYTHING_ON)
    assert config_map(manifests)["INGEST_WORKER_SECRET"] == "ingest-s3-credentials"
    assert of_kind(manifests, "Secret") == []
    api = pod_specs(manifests)["Deployment/ingest-api"]
    assert {"name": "auth",
            "secret": {"secretName": "ingest-api-tokens",
                       "items": [{"key": "tokens.json", "path": "tokens.json"}]}} in api["volumes"]


def test_each_component_runs_as_its_own_service_account(manifests: list[Manifest]) -> None:
    accounts = {doc["metadata"]["name"] for doc in of_kind(manifests, "ServiceAccount")}
    assert accounts == {"ingest-api", "ingest-operator", "ingest-worker"}
    specs = pod_specs(manifests)
    assert specs["Deployment/ingest-api"]["serviceAccountName"] == "ingest-api"
    assert specs["Deployment/ingest-operator"]["serviceAccountName"] == "ingest-operator"
    assert config_map(manifests)["INGEST_WORKER_SERVICE_ACCOUNT"] == "ingest-worker"
    assert of_kind(manifests, "ClusterRole") == of_kind(manifests, "ClusterRoleBinding") == []


@pytest.mark.parametrize("replicas", [1, 2])
def test_operator_elects_a_leader_only_with_more_than_one_replica(replicas: int) -> None:
    manifests = render(settings={"operator.replicas": str(replicas)})
    args = pod_specs(manifests)["Deployment/ingest-operator"]["containers"][0]["args"]
    lease_rules = [rule for rule in named(manifests, "Role", "ingest-operator")["rules"]
                   if rule["apiGroups"] == ["coordination.k8s.io"]]
    assert not [rule for rule in named(manifests, "Role",
                                       "ingest-operator")["rules"] if rule["apiGroups"] == ["kopf.dev"]]
    if replicas == 1:
        assert not [arg for arg in args if arg.startswith("--lease")] and not lease_rules
    else:
        assert "--lease=ingest-operator" in args
        assert lease_rules == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["ingest-operator"],
             "verbs": ["get", "update"]},
        ]


def test_bundled_minio_serves_the_configured_endpoint_with_the_same_credentials() -> None:
    manifests = render()
    assert config_map(manifests)["INGEST_S3_ENDPOINT"] == "ingest-minio.ingest.svc:9000"
    assert named(manifests, "Service", "ingest-minio")["spec"]["ports"][0]["port"] == 9000
    minio = pod_specs(manifests)["StatefulSet/ingest-minio"]["containers"][0]
    refs = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in minio["env"] if "valueFrom" in env}
    assert refs == {
        "MINIO_ROOT_USER": {"name": "ingest-s3", "key": "INGEST_S3_ACCESS_KEY"},
        "MINIO_ROOT_PASSWORD": {"name": "ingest-s3", "key": "INGEST_S3_SECRET_KEY"},
    }


def test_move_volume_is_named_for_the_operator() -> None:
    data = config_map(render(EVERYTHING_ON))
    assert (data["INGEST_MOVE_ROOTS"], data["INGEST_MOVE_MOUNT"], data["INGEST_MOVE_PVC"]) == (
        "/srv/dropbox", "/srv/dropbox", "instrument-dropbox")
    created = render(settings={"move.enabled": "true"})
    assert named(created, "PersistentVolumeClaim", "ingest-move")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_network_policy_selects_worker_pods_by_the_operators_label() -> None:
    policy = named(render(EVERYTHING_ON), "NetworkPolicy", "ingest-worker")
    assert policy["spec"]["podSelector"] == {"matchLabels": {jobs.COMPONENT_LABEL: WORKER}}


def test_without_minio_an_endpoint_and_credentials_are_required() -> None:
    result = helm("template", "ingest", str(CHART), "--set", "minio.enabled=false", "--set",
                  "objectStore.existingSecret=s3")
    assert result.returncode != 0 and "objectStore.endpoint is required" in result.stderr
    result = helm("template", "ingest", str(CHART), "--set", "minio.enabled=false", "--set",
                  "objectStore.endpoint=s3:9000")
    assert result.returncode != 0 and "objectStore.existingSecret" in result.stderr


def test_notes_tell_how_to_reach_the_api_and_upload() -> None:
    result = helm("install", "ingest", str(CHART), "--dry-run=client", "--namespace", "ingest")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/ingest-api" in notes and "/upload" in notes and "get ingestjobs" in notes



def test_monitoring_objects_are_optional_and_ship_the_dashboard() -> None:
    defaults = render()
    assert of_kind(defaults, "ServiceMonitor") == [] and "ingest-dashboard" not in [
        doc["metadata"]["name"] for doc in of_kind(defaults, "ConfigMap")
    ]
    manifests = render(EVERYTHING_ON)
    dashboard = json.loads(named(manifests, "ConfigMap", "ingest-dashboard")["data"]["ingest.json"])
    assert dashboard["panels"] and named(manifests, "ConfigMap",
                                         "ingest-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert of_kind(manifests, "ServiceMonitor") and of_kind(manifests, "PodMonitor")


def test_pool_workers_get_a_disruption_budget_from_two_up_and_no_ingress() -> None:
    """The operator creates pool worker Pods; the chart limits their disruption and network by the
    component label the operator gives them."""
    selector = {"matchLabels": {jobs.COMPONENT_LABEL: POOL_WORKER}}
    assert [pdb for pdb in of_kind(render(), "PodDisruptionBudget") if pdb["metadata"]["name"] == "ingest-pool"] == []
    budget = named(render(settings={"pool.min": "3"}), "PodDisruptionBudget", "ingest-pool")
    assert budget["spec"] == {"minAvailable": 2, "selector": selector}
    policy = named(render(EVERYTHING_ON), "NetworkPolicy", "ingest-pool-worker")
    assert policy["spec"]["podSelector"] == selector and policy["spec"]["ingress"] == []
    pod_mode = render(EVERYTHING_ON, settings={"pool.mode": "pod", "pool.min": "3"})
    assert not [item for item in pod_mode if item["metadata"]["name"] in ("ingest-pool", "ingest-pool-worker")]
