"""Render the Helm chart the way `helm install` would, without a cluster.

Shared by the chart tests and tests/integration/test_rbac.py (which replays the local stack's
API traffic against the rendered Roles).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Final

import yaml

from ingest.local.tools import ensure_helm

REPO: Final = Path(__file__).resolve().parents[2]
CHART: Final = REPO / "charts" / "ingest"
EVERYTHING_ON: Final = CHART / "ci" / "everything-on-values.yaml"
RELEASE: Final = "ingest"
NAMESPACE: Final = "ingest"

Manifest = dict[str, Any]
# The settings that come from the Secret (ingest.s3Secret), never from the ConfigMap.
CREDENTIALS: Final = frozenset({"INGEST_S3_ACCESS_KEY", "INGEST_S3_SECRET_KEY"})


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ensure_helm()), *args], capture_output=True, text=True, check=False)


def render(*values: Path, settings: dict[str, str] | None = None, crds: bool = True) -> list[Manifest]:
    """Every manifest `helm install RELEASE -n NAMESPACE` would create, CRDs first."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--include-crds"] if crds else []
    for path in values:
        args += ["--values", str(path)]
    for key, value in (settings or {}).items():
        args += ["--set", f"{key}={value}"]
    result = helm(*args)
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (doc,) = [doc for doc in of_kind(manifests, kind) if doc["metadata"]["name"] == name]
    return doc


def config_map(manifests: list[Manifest]) -> dict[str, str]:
    """The service's settings as the chart writes them (every component loads them with envFrom)."""
    data: dict[str, str] = named(manifests, "ConfigMap", "ingest-config")["data"]
    return data


def pod_specs(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The Pod template of every workload, by `Kind/name`."""
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc["spec"]["template"]["spec"]
        for doc in manifests if doc["kind"] in ("Deployment", "StatefulSet")
    }


def rules_of(manifests: list[Manifest], service_account: str) -> list[dict[str, Any]]:
    """The RBAC rules bound to a ServiceAccount of the release, Roles and ClusterRoles alike."""
    rules = []
    for binding in of_kind(manifests, "RoleBinding") + of_kind(manifests, "ClusterRoleBinding"):
        if any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in binding["subjects"]):
            role = named(manifests, binding["roleRef"]["kind"], binding["roleRef"]["name"])
            rules += role["rules"]
    return rules
