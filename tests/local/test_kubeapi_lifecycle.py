"""Deletion: finalizers, owner-reference garbage collection, delete options, collections."""
from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def test_finalizers_hold_deletion_until_removed(jobs: Any, ingestjob: Any) -> None:
    body = ingestjob("ingest-30", 30)
    body["metadata"]["finalizers"] = ["ingest.pacifica.org/cleanup"]
    jobs.create(body)
    jobs.delete("ingest-30", grace_period_seconds=5)
    pending = jobs.get("ingest-30")
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["deletionGracePeriodSeconds"] == 5
    assert pending["metadata"]["finalizers"] == ["ingest.pacifica.org/cleanup"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch("ingest-30", {"metadata": {"finalizers": ["ingest.pacifica.org/cleanup", "new/one"]}})
    assert caught.value.status == 422 and "no new finalizers" in caught.value.body
    listed = jobs.list()
    watch = kubernetes.watch.Watch()
    stream = watch.stream(jobs.api.list_namespaced_custom_object, "ingest.pacifica.org", "v1",
                          jobs.namespace, "ingestjobs",
                          resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=3)
    jobs.patch("ingest-30", {"metadata": {"finalizers": None}})
    assert next(stream)["type"] == "DELETED"
    watch.stop()
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.get("ingest-30")
    assert caught.value.status == 404


def test_owner_references_are_garbage_collected(api_client: Any, jobs: Any, ingestjob: Any,
                                                eventually: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    owner = jobs.create(ingestjob("ingest-31", 31))
    for name in ("worker", "kept"):
        core.create_namespaced_pod(jobs.namespace, {
            "metadata": {"name": name, "ownerReferences": [_owner(owner)]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})
    core.create_namespaced_config_map(jobs.namespace, {"metadata": {"name": "unrelated"}})
    jobs.delete("ingest-31")

    def pods() -> set[str]:
        return {p.metadata.name for p in core.list_namespaced_pod(jobs.namespace).items}

    eventually(lambda: not pods())
    assert core.read_namespaced_config_map("unrelated", jobs.namespace)


def test_orphan_propagation_keeps_dependents(api_client: Any, jobs: Any, ingestjob: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    owner = jobs.create(ingestjob("ingest-32", 32))
    core.create_namespaced_config_map(jobs.namespace, {
        "metadata": {"name": "dep", "ownerReferences": [_owner(owner)]}})
    jobs.delete("ingest-32", propagation_policy="Orphan")
    import time

    time.sleep(0.2)
    dep = core.read_namespaced_config_map("dep", jobs.namespace)
    assert not dep.metadata.owner_references


def test_dependent_with_finalizer_waits_and_live_co_owner_keeps_it(api_client: Any, jobs: Any,
                                                                   ingestjob: Any, eventually: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    a = jobs.create(ingestjob("ingest-33", 33))
    b = jobs.create(ingestjob("ingest-34", 34))
    core.create_namespaced_config_map(jobs.namespace, {
        "metadata": {"name": "shared", "ownerReferences": [_owner(a), _owner(b)]}})
    core.create_namespaced_pod(jobs.namespace, {
        "metadata": {"name": "held", "finalizers": ["x.org/hold"], "ownerReferences": [_owner(a)]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    jobs.delete("ingest-33")
    held = eventually(lambda: core.read_namespaced_pod("held", jobs.namespace).metadata.deletion_timestamp)
    assert held
    shared = eventually(lambda: (lambda cm: cm if len(cm.metadata.owner_references or []) == 1 else None)(
        core.read_namespaced_config_map("shared", jobs.namespace)))
    assert shared.metadata.owner_references[0].uid == b["metadata"]["uid"]
    core.patch_namespaced_pod("held", jobs.namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(kubernetes.client.ApiException):
        core.read_namespaced_pod("held", jobs.namespace)


def test_pods_are_deleted_immediately(api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "c", "image": "i"}]}})
    core.delete_namespaced_pod("p", namespace, grace_period_seconds=30)
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.read_namespaced_pod("p", namespace)
    assert caught.value.status == 404


def test_delete_preconditions(api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.delete_namespaced_config_map("c", namespace, body={
            "preconditions": {"resourceVersion": "1"}})
    assert caught.value.status == 409 and json.loads(caught.value.body)["reason"] == "Conflict"
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.delete_namespaced_config_map("c", namespace, body={"preconditions": {"uid": "nope"}})
    assert caught.value.status == 409
    core.delete_namespaced_config_map("c", namespace, body={
        "preconditions": {"uid": cm.metadata.uid, "resourceVersion": cm.metadata.resource_version}})


def test_deletecollection_with_label_selector(api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"team": team}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["c"]


def test_deleting_a_namespace_deletes_its_content(api_client: Any, eventually: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}})
    core.delete_namespace("doomed")
    eventually(lambda: "doomed" not in {n.metadata.name for n in core.list_namespace().items})
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}})
    assert caught.value.status == 404
