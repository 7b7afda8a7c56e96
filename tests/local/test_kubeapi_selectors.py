"""Label and field selectors on list, pagination and list envelopes."""
from __future__ import annotations

from typing import Any

import kubernetes
import pytest


@pytest.fixture()
def labelled(api_client: Any, namespace: str) -> kubernetes.client.CoreV1Api:
    core = kubernetes.client.CoreV1Api(api_client)
    for name, labels in (("a", {"app": "ingest", "tier": "api"}),
                         ("b", {"app": "ingest", "tier": "worker"}),
                         ("c", {"app": "other"}),
                         ("d", {})):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})
    return core


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=ingest", {"a", "b"}),
    ("app==ingest", {"a", "b"}),
    ("app!=ingest", {"c", "d"}),
    ("tier in (api, worker)", {"a", "b"}),
    ("tier notin (api)", {"b", "c", "d"}),
    ("tier", {"a", "b"}),
    ("!tier", {"c", "d"}),
    ("app=ingest,tier!=api", {"b"}),
])
def test_label_selectors(labelled: Any, namespace: str, selector: str, expected: set[str]) -> None:
    items = labelled.list_namespaced_config_map(namespace, label_selector=selector).items
    assert {i.metadata.name for i in items} == expected


def test_field_selectors_on_names_events_and_pods(labelled: Any, namespace: str) -> None:
    names = labelled.list_namespaced_config_map(namespace, field_selector="metadata.name=b").items
    assert [i.metadata.name for i in names] == ["b"]
    names = labelled.list_namespaced_config_map(namespace, field_selector="metadata.name!=b").items
    assert {i.metadata.name for i in names} == {"a", "c", "d"}
    for n, (kind, obj) in enumerate((("IngestJob", "ingest-1"), ("Pod", "ingest-1"),
                                     ("IngestJob", "ingest-2"))):
        labelled.create_namespaced_event(namespace, {
            "metadata": {"name": f"ev{n}"}, "reason": "Test", "message": "m",
            "involvedObject": {"kind": kind, "name": obj, "namespace": namespace, "uid": f"u{n}"}})
    events = labelled.list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=IngestJob,involvedObject.name=ingest-1,"
                                  f"involvedObject.namespace={namespace}").items
    assert [e.metadata.name for e in events] == ["ev0"]
    events = labelled.list_event_for_all_namespaces(field_selector="involvedObject.uid=u2").items
    assert [e.metadata.name for e in events] == ["ev2"]
    for name, node in (("p1", "n1"), ("p2", "n2")):
        labelled.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "i"}]}})
    labelled.patch_namespaced_pod_status("p2", namespace, {"status": {"phase": "Running"}})
    running = labelled.list_namespaced_pod(namespace, field_selector="status.phase=Running").items
    assert [p.metadata.name for p in running] == ["p2"]
    on_n1 = labelled.list_namespaced_pod(namespace, field_selector="spec.nodeName=n1").items
    assert [p.metadata.name for p in on_n1] == ["p1"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        labelled.list_namespaced_config_map(namespace, field_selector="data.x=1")
    assert caught.value.status == 400 and "field label not supported" in caught.value.body


def test_lists_have_kind_api_version_and_resource_version(kubeapi: Any, labelled: Any, namespace: str) -> None:
    code, body = kubeapi.http("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) > 0
    code, body = kubeapi.http("GET", f"/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs")
    assert body["kind"] == "IngestJobList" and body["apiVersion"] == "ingest.pacifica.org/v1"


def test_limit_and_continue(labelled: Any, namespace: str) -> None:
    first = labelled.list_namespaced_config_map(namespace, limit=3)
    assert [i.metadata.name for i in first.items] == ["a", "b", "c"]
    assert first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = labelled.list_namespaced_config_map(namespace, limit=3, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["d"] and not rest.metadata._continue
