"""Paginated lists as a real API server serves them: ``limit`` + ``continue``, one consistent
snapshot across pages, ``remainingItemCount``, and 410 Expired once the snapshot is compacted.

Driven with the official client (``limit`` / ``_continue``) and kubectl (``--chunk-size``).
"""
from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes
import pytest

from tests.local.conftest import Jobs, make_ingestjob


def _names(page: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in page["items"]]


def _fill(jobs: Jobs, count: int, first: int = 1) -> list[str]:
    names = [f"ingest-{n:03d}" for n in range(first, first + count)]
    for n, name in zip(range(first, first + count), names, strict=True):
        jobs.create(make_ingestjob(name, n))
    return names


def test_pages_cover_every_object_once_with_remaining_counts(jobs: Jobs) -> None:
    names = _fill(jobs, 25)
    first = jobs.list(limit=10)
    assert _names(first) == names[:10]
    assert first["metadata"]["remainingItemCount"] == 15
    second = jobs.list(limit=10, _continue=first["metadata"]["continue"])
    assert _names(second) == names[10:20] and second["metadata"]["remainingItemCount"] == 5
    third = jobs.list(limit=10, _continue=second["metadata"]["continue"])
    assert _names(third) == names[20:]
    assert not third["metadata"].get("continue") and "remainingItemCount" not in third["metadata"]
    # Every page names the first page's version: the list is one snapshot.
    versions = {p["metadata"]["resourceVersion"] for p in (first, second, third)}
    assert len(versions) == 1


def test_later_pages_show_the_snapshot_of_the_first(jobs: Jobs) -> None:
    _fill(jobs, 6, first=10)
    first = jobs.list(limit=2)
    assert _names(first) == ["ingest-010", "ingest-011"]
    version = first["metadata"]["resourceVersion"]
    before = jobs.get("ingest-013")
    jobs.delete("ingest-012")
    jobs.patch_status("ingest-013", {"status": {"state": "FAILED", "task": "open tar"}})
    jobs.create(make_ingestjob("ingest-099", 99))  # sorts after every page
    jobs.create(make_ingestjob("ingest-0105", 105))  # sorts inside the pages still to come
    rest: list[dict[str, Any]] = []
    token = first["metadata"]["continue"]
    while token:
        page = jobs.list(limit=2, _continue=token)
        assert page["metadata"]["resourceVersion"] == version
        rest.extend(page["items"])
        token = page["metadata"].get("continue")
    assert [i["metadata"]["name"] for i in rest] == [f"ingest-0{n}" for n in (12, 13, 14, 15)]
    unchanged = next(i for i in rest if i["metadata"]["name"] == "ingest-013")
    assert unchanged["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "FAILED" not in json.dumps(unchanged)
    # A fresh list sees the present.
    now = _names(jobs.list())
    assert "ingest-012" not in now and {"ingest-099", "ingest-0105"} <= set(now)


def test_a_selector_pages_without_a_remaining_count(api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    for n in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {
            "name": f"cm-{n}", "labels": {"even": str(n % 2 == 0).lower()}}})
    page = core.list_namespaced_config_map(namespace, label_selector="even=true", limit=2)
    assert [i.metadata.name for i in page.items] == ["cm-0", "cm-2"]
    assert page.metadata._continue and page.metadata.remaining_item_count is None
    rest = core.list_namespaced_config_map(namespace, label_selector="even=true", limit=2,
                                           _continue=page.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["cm-4", "cm-6"]


def test_a_malformed_or_mismatched_token_is_400(jobs: Jobs) -> None:
    _fill(jobs, 3)
    for token in ("not-a-token", base64.urlsafe_b64encode(b'{"v":"x","rv":3}').decode()):
        with pytest.raises(kubernetes.client.ApiException) as caught:
            jobs.list(limit=1, _continue=token)
        assert caught.value.status == 400 and "continue key is not valid" in caught.value.body
    token = jobs.list(limit=1)["metadata"]["continue"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.list(limit=1, _continue=token, resource_version="5")
    assert caught.value.status == 400


def test_a_token_older_than_the_compaction_window_is_410_expired(spawn_emulator: Any) -> None:
    emulator = spawn_emulator("--history", "5")
    configuration = kubernetes.client.Configuration()
    configuration.host = emulator.url
    configuration.api_key = {"authorization": "Bearer admin"}
    with kubernetes.client.ApiClient(configuration) as client:
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": "pages"}})
        jobs = Jobs(client, "pages")
        _fill(jobs, 4)
        first = jobs.list(limit=2)
        token = first["metadata"]["continue"]
        assert _names(jobs.list(limit=2, _continue=token)) == ["ingest-003", "ingest-004"]
        for n in range(6):  # 6 writes after the snapshot: it falls out of a window of 5
            jobs.patch_status("ingest-001", {"status": {"exception": f"write {n}"}})
        with pytest.raises(kubernetes.client.ApiException) as caught:
            jobs.list(limit=2, _continue=token)
        assert caught.value.status == 410
        status = json.loads(caught.value.body)
        assert status["reason"] == "Expired" and "too old to display a consistent list" in status["message"]
        # The Status offers an inconsistent token that continues after the same key, now.
        rest = jobs.list(limit=2, _continue=status["metadata"]["continue"])
        assert _names(rest) == ["ingest-003", "ingest-004"]
        assert int(rest["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_kubectl_chunk_size_reads_every_page(kubectl: Any, kubeapi: Any, jobs: Jobs) -> None:
    names = _fill(jobs, 23)
    kubeapi.http("DELETE", "/_emulator/requests")
    out = kubectl("get", "-n", jobs.namespace, "ingestjobs", "--chunk-size=5", "-o", "name").stdout
    assert [line.split("/")[-1] for line in out.split()] == names
    log = kubeapi.http("GET", "/_emulator/requests")[1]
    entries = log if isinstance(log, list) else log.get("requests", [])
    lists = [r for r in entries if r.get("verb") == "list" and r.get("resource") == "ingestjobs"
             and r.get("namespace") == jobs.namespace]
    assert len(lists) == 5  # 23 objects in pages of 5
    table = kubectl("get", "-n", jobs.namespace, "ij", "--chunk-size=10").stdout.splitlines()
    assert len(table) == 24 and table[0].split()[0] == "NAME"
