"""Discovery, /version and OpenAPI: what kubectl and kopf read before they touch an object."""
from __future__ import annotations

from typing import Any

import kubernetes


def test_core_discovery_has_group_version_v1(kubeapi: Any) -> None:
    code, body = kubeapi.http("GET", "/api/v1")
    assert code == 200
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in body["resources"]}
    for name in ("namespaces", "pods", "pods/status", "events", "configmaps", "secrets",
                 "serviceaccounts", "services"):
        assert name in by_name, name
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods"]["namespaced"] is True and "po" in by_name["pods"]["shortNames"]
    assert set(by_name["pods/status"]["verbs"]) == {"get", "patch", "update"}
    assert "watch" in by_name["pods"]["verbs"]
    code, versions = kubeapi.http("GET", "/api")
    assert versions["versions"] == ["v1"]


def test_group_discovery_lists_crd_and_builtin_groups(api_client: Any) -> None:
    groups = kubernetes.client.ApisApi(api_client).get_api_versions()
    names = {g.name: g for g in groups.groups}
    for group in ("ingest.pacifica.org", "apiextensions.k8s.io", "coordination.k8s.io",
                  "events.k8s.io"):
        assert group in names
    assert names["ingest.pacifica.org"].preferred_version.group_version == "ingest.pacifica.org/v1"


def test_crd_resource_discovery(kubeapi: Any) -> None:
    code, body = kubeapi.http("GET", "/apis/ingest.pacifica.org/v1")
    assert code == 200 and body["groupVersion"] == "ingest.pacifica.org/v1"
    jobs = next(r for r in body["resources"] if r["name"] == "ingestjobs")
    assert jobs["kind"] == "IngestJob" and jobs["namespaced"] is True
    assert jobs["shortNames"] == ["ij"] and jobs["categories"] == ["pacifica"]
    assert jobs["singularName"] == "ingestjob"
    assert any(r["name"] == "ingestjobs/status" for r in body["resources"])


def test_version(api_client: Any) -> None:
    info = kubernetes.client.VersionApi(api_client).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")


def test_openapi_v3_serves_crd_schema_with_gvk(kubeapi: Any) -> None:
    code, root = kubeapi.http("GET", "/openapi/v3")
    assert code == 200
    url = root["paths"]["apis/ingest.pacifica.org/v1"]["serverRelativeURL"]
    assert "api/v1" in root["paths"]
    code, doc = kubeapi.http("GET", url)
    assert code == 200
    schema = doc["components"]["schemas"]["org.pacifica.ingest.v1.IngestJob"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "ingest.pacifica.org", "version": "v1", "kind": "IngestJob"}]
    assert schema["properties"]["spec"]["properties"]["operation"]["enum"] == ["upload", "move"]
    patch = doc["paths"]["/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert kubeapi.http("GET", "/openapi/v2")[0] == 404


def test_crd_created_through_the_api_is_discovered_and_served(kubeapi: Any, api_client: Any) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api_client)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.org"},
        "spec": {"group": "example.org", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "properties": {"spec": {
                                       "type": "object", "properties": {"size": {"type": "integer"}}}}}}}]},
    }
    created = ext.create_custom_resource_definition(crd)
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions["Established"] == "True"
    code, body = kubeapi.http("GET", "/apis/example.org/v1")
    assert code == 200 and body["resources"][0]["kind"] == "Widget"
    objects = kubernetes.client.CustomObjectsApi(api_client)
    objects.create_namespaced_custom_object("example.org", "v1", "default", "widgets", {
        "apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 3, "colour": "red"}})
    widget = objects.get_namespaced_custom_object("example.org", "v1", "default", "widgets", "w")
    assert widget["spec"] == {"size": 3}  # pruned by the CRD's schema
    ext.delete_custom_resource_definition("widgets.example.org")
    assert kubeapi.http("GET", "/apis/example.org/v1")[0] == 404
    assert kubeapi.http("GET", "/apis/example.org/v1/namespaces/default/widgets/w")[0] == 404
