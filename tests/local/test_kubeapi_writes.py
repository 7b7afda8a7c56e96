"""Write semantics: status isolation, generation, resourceVersion conflicts, names, namespaces,
the four patch types and PUT."""
from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

JSON_PATCH = "application/json-patch+json"


def _error(exc: kubernetes.client.ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body


def test_main_resource_write_cannot_change_status(jobs: Any, ingestjob: Any) -> None:
    body = ingestjob("ingest-10", 10)
    body["status"] = {"state": "FAILED"}
    created = jobs.create(body)
    assert "status" not in created  # create cannot set status when /status exists
    jobs.patch_status("ingest-10", {"status": {"state": "OK"}})
    patched = jobs.patch("ingest-10", {"spec": {"user": "alice"}, "status": {"state": "FAILED"}})
    assert patched["status"] == {"state": "OK"} and patched["spec"]["user"] == "alice"
    current = jobs.get("ingest-10")
    current["status"] = {"state": "FAILED"}
    replaced = jobs.replace("ingest-10", current)
    assert replaced["status"] == {"state": "OK"}


def test_status_write_cannot_change_anything_but_status(jobs: Any, ingestjob: Any) -> None:
    jobs.create(ingestjob("ingest-11", 11))
    updated = jobs.patch_status("ingest-11", {
        "spec": {"jobId": 99}, "metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}},
        "status": {"state": "OK"}})
    assert updated["spec"]["jobId"] == 11 and updated["status"] == {"state": "OK"}
    assert "x" not in updated["metadata"]["labels"] and "annotations" not in updated["metadata"]
    current = jobs.get("ingest-11")
    current["spec"]["operation"] = "move"
    current["status"] = {"state": "FAILED"}
    replaced = jobs.replace_status("ingest-11", current)
    assert replaced["spec"]["operation"] == "upload" and replaced["status"] == {"state": "FAILED"}


def test_generation_bumps_only_on_spec_changes(jobs: Any, ingestjob: Any) -> None:
    created = jobs.create(ingestjob("ingest-12", 12))
    assert created["metadata"]["generation"] == 1
    after_status = jobs.patch_status("ingest-12", {"status": {"state": "OK"}})
    assert after_status["metadata"]["generation"] == 1
    after_labels = jobs.patch("ingest-12", {"metadata": {"labels": {"a": "b"}}})
    assert after_labels["metadata"]["generation"] == 1
    after_spec = jobs.patch("ingest-12", {"spec": {"user": "bob"}})
    assert after_spec["metadata"]["generation"] == 2


def test_every_write_bumps_resource_version_and_stale_writes_conflict(jobs: Any, ingestjob: Any) -> None:
    created = jobs.create(ingestjob("ingest-13", 13))
    rv1 = int(created["metadata"]["resourceVersion"])
    patched = jobs.patch_status("ingest-13", {"status": {"state": "OK"}})
    rv2 = int(patched["metadata"]["resourceVersion"])
    assert rv2 > rv1
    assert isinstance(patched["metadata"]["resourceVersion"], str)
    stale = dict(created)
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.replace("ingest-13", stale)
    body = _error(caught.value)
    assert caught.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch("ingest-13", {"metadata": {"resourceVersion": str(rv1)}, "spec": {"user": "x"}})
    assert caught.value.status == 409
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.create(ingestjob("ingest-13", 13))
    body = _error(caught.value)
    assert caught.value.status == 409 and body["reason"] == "AlreadyExists"
    no_rv = jobs.get("ingest-13")
    del no_rv["metadata"]["resourceVersion"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.replace("ingest-13", no_rv)  # custom resources need a resourceVersion on PUT
    assert caught.value.status == 422


def test_json_patch_test_operation(jobs: Any, ingestjob: Any) -> None:
    created = jobs.create(ingestjob("ingest-14", 14))
    rv = created["metadata"]["resourceVersion"]
    ok = jobs.patch("ingest-14", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x.org/f"]}],
        _content_type=JSON_PATCH)
    assert ok["metadata"]["finalizers"] == ["x.org/f"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch("ingest-14", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "remove", "path": "/metadata/finalizers"}], _content_type=JSON_PATCH)
    assert caught.value.status == 422
    assert jobs.get("ingest-14")["metadata"]["finalizers"] == ["x.org/f"]
    jobs.patch("ingest-14", [{"op": "remove", "path": "/metadata/finalizers"}],
               _content_type=JSON_PATCH)


def test_generate_name_and_system_fields(jobs: Any, ingestjob: Any) -> None:
    body = ingestjob("", 15)
    body["metadata"] = {"generateName": "ingest-"}
    created = jobs.create(body)
    meta = created["metadata"]
    assert meta["name"].startswith("ingest-") and len(meta["name"]) == len("ingest-") + 5
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert meta["namespace"] == jobs.namespace


def test_namespace_comes_from_the_url(jobs: Any, ingestjob: Any, api_client: Any) -> None:
    body = ingestjob("ingest-16", 16)
    body["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.create(body)
    assert caught.value.status == 400
    assert "does not match the namespace" in _error(caught.value)["message"]
    objects = kubernetes.client.CustomObjectsApi(api_client)
    with pytest.raises(kubernetes.client.ApiException) as caught:
        objects.create_namespaced_custom_object("ingest.pacifica.org", "v1", "no-such-ns",
                                                "ingestjobs", ingestjob("ingest-16", 16))
    body = _error(caught.value)
    assert caught.value.status == 404 and body["message"] == 'namespaces "no-such-ns" not found'


def test_not_found_message(jobs: Any) -> None:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.get("ingest-7")
    body = _error(caught.value)
    assert caught.value.status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'ingestjobs.ingest.pacifica.org "ingest-7" not found'
    assert body["details"] == {"name": "ingest-7", "group": "ingest.pacifica.org", "kind": "ingestjobs"}


def test_strategic_merge_on_pods_and_415_on_custom_resources(api_client: Any, namespace: str,
                                                            jobs: Any, ingestjob: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "one", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "two"}]}})
    pod = core.patch_namespaced_pod("p", namespace, {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "2"}]}]}},
        _content_type="application/strategic-merge-patch+json")
    containers = {c.name: c for c in pod.spec.containers}
    assert set(containers) == {"a", "b"} and containers["a"].image == "one"
    assert [e.name for e in containers["a"].env] == ["X", "Y"]
    jobs.create(ingestjob("ingest-17", 17))
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch("ingest-17", {"spec": {"user": "x"}},
                   _content_type="application/strategic-merge-patch+json")
    assert caught.value.status == 415 and _error(caught.value)["reason"] == "UnsupportedMediaType"


def test_pod_status_subresource(api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(namespace, {
        "metadata": {"name": "runner"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Succeeded"}})
    assert created.status.phase == "Pending"
    patched = core.patch_namespaced_pod_status("runner", namespace, {
        "status": {"phase": "Running"}, "spec": {"nodeName": "sneaky"}})
    assert patched.status.phase == "Running" and patched.spec.node_name is None


def test_server_side_apply_creates_then_merges(kubeapi: Any, namespace: str) -> None:
    path = f"/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs/ingest-18?fieldManager=t"
    manifest = (b"apiVersion: ingest.pacifica.org/v1\nkind: IngestJob\nmetadata:\n  name: ingest-18\n"
                b"spec:\n  jobId: 18\n  operation: upload\n")
    code, body = kubeapi.http("PATCH", path, manifest, content_type="application/apply-patch+yaml")
    assert code == 201 and body["spec"]["jobId"] == 18
    code, body = kubeapi.http("PATCH", path, b"apiVersion: ingest.pacifica.org/v1\nkind: IngestJob\n"
                              b"metadata:\n  name: ingest-18\nspec:\n  user: carol\n",
                              content_type="application/apply-patch+yaml")
    assert code == 200 and body["spec"] == {"jobId": 18, "operation": "upload", "user": "carol"}
    code, body = kubeapi.http("PATCH", path.split("?")[0], manifest,
                              content_type="application/apply-patch+yaml")
    assert code == 422  # fieldManager is required


def test_noop_patch_keeps_resource_version(jobs: Any, ingestjob: Any) -> None:
    created = jobs.create(ingestjob("ingest-19", 19))
    same = jobs.patch("ingest-19", {"spec": {"jobId": 19}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
