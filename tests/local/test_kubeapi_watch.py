"""Watches: streaming format, resume, 410 Gone, bookmarks, watch-list initial events,
timeouts, no event lost between list and watch, clean-up on disconnect."""
from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import kubernetes
import pytest

GROUP = ("ingest.pacifica.org", "v1")


def _stream(kubeapi: Any, path: str, *, user: str = "admin") -> tuple[http.client.HTTPConnection,
                                                                      http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", kubeapi.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {user}"})
    return conn, conn.getresponse()


def _events(response: http.client.HTTPResponse, count: int) -> list[dict[str, Any]]:
    return [json.loads(response.readline()) for _ in range(count)]


def test_watch_streams_ndjson_events(kubeapi: Any, jobs: Any, ingestjob: Any) -> None:
    listed = jobs.list()
    path = (f"/apis/ingest.pacifica.org/v1/namespaces/{jobs.namespace}/ingestjobs?watch=1"
            f"&resourceVersion={listed['metadata']['resourceVersion']}&timeoutSeconds=5")
    conn, response = _stream(kubeapi, path)
    try:
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("Transfer-Encoding") == "chunked"
        jobs.create(ingestjob("ingest-20", 20))
        jobs.patch_status("ingest-20", {"status": {"state": "OK"}})
        jobs.delete("ingest-20")
        events = _events(response, 3)
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        assert events[1]["object"]["status"] == {"state": "OK"}
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3
    finally:
        conn.close()


def test_resume_from_resource_version_replays_history(jobs: Any, ingestjob: Any) -> None:
    created = jobs.create(ingestjob("ingest-21", 21))
    jobs.patch_status("ingest-21", {"status": {"task": "open tar"}})
    jobs.patch_status("ingest-21", {"status": {"task": "ingest files"}})
    watch = kubernetes.watch.Watch()
    seen = []
    for event in watch.stream(jobs.api.list_namespaced_custom_object, *GROUP, jobs.namespace,
                              "ingestjobs", resource_version=created["metadata"]["resourceVersion"],
                              timeout_seconds=1):
        seen.append((event["type"], event["object"]["status"]["task"]))
    assert seen == [("MODIFIED", "open tar"), ("MODIFIED", "ingest files")]


def test_too_old_resource_version_is_410_gone(spawn_emulator: Any) -> None:
    emulator = spawn_emulator("--history", "5")
    if True:
        path = "/api/v1/namespaces/default/configmaps"
        code, first = emulator.http("POST", path, {"metadata": {"name": "c"}, "data": {"n": "0"}})
        for n in range(1, 10):
            emulator.http("PATCH", path + "/c", {"data": {"n": str(n)}},
                          content_type="application/merge-patch+json")
        conn, response = _stream(emulator, path + f"?watch=1&resourceVersion="
                                 f"{first['metadata']['resourceVersion']}")
        event = json.loads(response.readline())
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        conn.close()
        import kubernetes as k

        configuration = k.client.Configuration()
        configuration.host = emulator.url
        with k.client.ApiClient(configuration) as client:
            core = k.client.CoreV1Api(client)
            with pytest.raises(k.client.ApiException) as caught:
                for _ in k.watch.Watch().stream(core.list_namespaced_config_map, "default",
                                                resource_version=first["metadata"]["resourceVersion"],
                                                timeout_seconds=2):
                    pass
            assert caught.value.status == 410


def test_periodic_bookmarks(jobs: Any) -> None:
    watch = kubernetes.watch.Watch()
    types = [e["type"] for e in watch.stream(
        jobs.api.list_namespaced_custom_object, *GROUP, jobs.namespace, "ingestjobs",
        allow_watch_bookmarks=True, timeout_seconds=3)]
    assert types.count("BOOKMARK") >= 2  # the test server sends one a second


def test_send_initial_events_ends_with_annotated_bookmark(kubeapi: Any, jobs: Any, ingestjob: Any) -> None:
    for n in (22, 23):
        jobs.create(ingestjob(f"ingest-{n}", n))
    path = (f"/apis/ingest.pacifica.org/v1/namespaces/{jobs.namespace}/ingestjobs?watch=1"
            "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
            "&timeoutSeconds=5")
    conn, response = _stream(kubeapi, path)
    try:
        events = _events(response, 3)
        assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
        bookmark = events[2]["object"]
        assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert bookmark["kind"] == "IngestJob"
        assert int(bookmark["metadata"]["resourceVersion"]) >= max(
            int(e["object"]["metadata"]["resourceVersion"]) for e in events[:2])
    finally:
        conn.close()
    code, body = kubeapi.http("GET", path.replace("&resourceVersionMatch=NotOlderThan", ""))
    assert code == 422


def test_timeout_seconds_is_honoured(jobs: Any) -> None:
    started = time.monotonic()
    list(kubernetes.watch.Watch().stream(jobs.api.list_namespaced_custom_object, *GROUP,
                                         jobs.namespace, "ingestjobs", timeout_seconds=1))
    assert 0.9 <= time.monotonic() - started < 3


def test_no_event_lost_between_list_and_watch(jobs: Any, ingestjob: Any) -> None:
    """Writes keep landing while we list and then watch from the list's version."""
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            obj = jobs.create(ingestjob(f"race-{n}", 1000 + n))
            written.append(obj["metadata"]["name"])

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    listed = jobs.list()
    seen = {i["metadata"]["name"] for i in listed["items"]}
    watch = kubernetes.watch.Watch()
    deadline = time.monotonic() + 0.5
    for event in watch.stream(jobs.api.list_namespaced_custom_object, *GROUP, jobs.namespace,
                              "ingestjobs", resource_version=listed["metadata"]["resourceVersion"],
                              timeout_seconds=2):
        seen.add(event["object"]["metadata"]["name"])
        if time.monotonic() > deadline and not stop.is_set():
            stop.set()
            thread.join()
        if stop.is_set() and set(written) <= seen:
            watch.stop()
    stop.set()
    thread.join()
    assert set(written) <= seen


def test_selector_transitions_and_field_selector_watch(kubeapi: Any, api_client: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    listed = core.list_namespaced_config_map(namespace)
    conn, response = _stream(kubeapi, f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                             f"&labelSelector=state%3Dhot&resourceVersion={listed.metadata.resource_version}")
    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "m", "labels": {"state": "cold"}}})
        core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"state": "hot"}}})
        core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"state": "cold"}}})
        assert [e["type"] for e in _events(response, 2)] == ["ADDED", "DELETED"]
    finally:
        conn.close()


def test_disconnected_watches_are_cleaned_up(kubeapi: Any, namespace: str) -> None:
    baseline = kubeapi.http("GET", "/_emulator/stats")[1]["watchers"]
    connections = [_stream(kubeapi, f"/api/v1/namespaces/{namespace}/configmaps?watch=1")
                   for _ in range(5)]
    assert kubeapi.http("GET", "/_emulator/stats")[1]["watchers"] == baseline + 5
    for conn, response in connections:
        response.close()
        conn.close()
    deadline = time.monotonic() + 5
    while kubeapi.http("GET", "/_emulator/stats")[1]["watchers"] != baseline:
        assert time.monotonic() < deadline, "watchers leaked after disconnect"
        time.sleep(0.05)


def test_field_selected_watch_on_selectable_field_sends_leaving_as_deleted(
        jobs: Any, ingestjob: Any) -> None:
    """The operator's watch of jobs in flight (`status.complete!=true`): a job that finishes leaves
    the selection as DELETED and one made unfinished again (a retry) comes back as ADDED, as a
    real API server sends them; the official client's watch sees exactly that."""
    listed = jobs.list(field_selector="status.complete!=true")
    assert listed["items"] == []
    events: list[tuple[str, Any]] = []

    def follow() -> None:
        watch = kubernetes.watch.Watch()
        for event in watch.stream(jobs.api.list_namespaced_custom_object, *jobs._args(),
                                  field_selector="status.complete!=true", timeout_seconds=10,
                                  resource_version=listed["metadata"]["resourceVersion"]):
            events.append((event["type"], (event["object"].get("status") or {}).get("complete")))
            if len(events) == 4:
                watch.stop()

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.3)
    jobs.create(ingestjob("ingest-1", 1))  # no status yet: not complete, so selected
    jobs.patch_status("ingest-1", {"status": {"state": "OK", "complete": False}})
    jobs.patch_status("ingest-1", {"status": {"complete": True}})
    jobs.patch_status("ingest-1", {"status": {"state": "FAILED"}})  # outside the selection: unseen
    jobs.patch_status("ingest-1", {"status": {"complete": False}})
    thread.join(15)
    assert events == [("ADDED", None), ("MODIFIED", False), ("DELETED", True), ("ADDED", False)]
    finished = jobs.list(field_selector="status.complete=true", limit=1)
    assert finished["items"] == []
    assert [j["metadata"]["name"] for j in jobs.list(field_selector="status.complete==false")["items"]] == ["ingest-1"]
