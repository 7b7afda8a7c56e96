"""The API's get_state cache against the Kubernetes API emulator (a real server over HTTP).

What it holds is bounded by what is in flight: unfinished jobs, plus a bounded number of finished
ones; older finished jobs are read directly. It never goes back to an older version, survives a
job it cannot read, and relists when its watch falls out of the server's window (410 Gone).
"""
from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from ingest import jobs, metrics
from ingest.api.state import StateCache, UnreadableJob
from ingest.kube import JobStore
from tests.emulated import job_store_in_new_namespace
from tests.local.conftest import Emulator, start_emulator, stop_emulator, wait_for

FINISHED = {"state": "OK", "task": "ingest metadata", "taskPercent": 100.0, "complete": True,
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:01:00Z", "exception": ""}
RUNNING = {"state": "OK", "task": "ingest files", "taskPercent": 40.0, "complete": False,
           "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:01:00Z", "exception": ""}


@pytest.fixture()
def emulator(tmp_path: pathlib.Path) -> Iterator[Emulator]:
    started = start_emulator(tmp_path, "--data", str(tmp_path / "kubeapi.json"))
    yield started
    if started.process.poll() is None:
        stop_emulator(started)


@pytest.fixture()
def store(emulator: Emulator) -> JobStore:
    return job_store_in_new_namespace(emulator)


def create(store: JobStore, job_id: int, status: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{jobs.GROUP}/{jobs.VERSION}", "kind": "IngestJob",
            "metadata": {"name": jobs.job_name(job_id), "labels": {jobs.JOB_ID_LABEL: str(job_id)}},
            "spec": {"jobId": job_id, "operation": "upload"}, "status": status}
    return store.create(body)


def patch_status(store: JobStore, job_id: int, status: dict[str, Any]) -> dict[str, Any]:
    return store.custom.patch_namespaced_custom_object_status(
        jobs.GROUP, jobs.VERSION, store.namespace, jobs.PLURAL, jobs.job_name(job_id), {"status": status})


@pytest.fixture()
def running_cache() -> Iterator[Any]:
    caches: list[StateCache] = []

    def start(store: JobStore, finished: int = 1000) -> StateCache:
        cache = StateCache(store, finished=finished)
        cache.start()
        caches.append(cache)
        assert cache.synced.wait(20)
        return cache

    yield start
    for cache in caches:
        cache.stop()


def lookup(cache: StateCache, job_id: int) -> dict[str, Any] | None:
    return asyncio.run(cache.lookup(job_id))


def test_start_up_holds_only_unfinished_jobs_and_reads_old_ones_on_demand(store: JobStore, running_cache: Any) -> None:
    for job_id in range(1, 21):
        create(store, job_id, FINISHED)
    for job_id in range(21, 31):
        create(store, job_id, RUNNING)
    cache = running_cache(store, finished=5)
    assert sorted(cache.documents) == list(range(21, 31))
    document = lookup(cache, 3)
    assert document is not None and document["complete"] is True and document["task_percent"] == "100.0"
    assert 3 in cache.documents  # kept, as one of the 5 most recent finished
    for job_id in range(21, 31):
        patch_status(store, job_id, FINISHED)
    wait_for(lambda: not any(cache.documents.get(j, {}).get("complete") is False for j in range(21, 31)), 10)
    # At most 5 finished jobs are held; every job still answers, from the cache or a read.
    wait_for(lambda: len(cache) <= 5, 10)
    for job_id in (1, 21, 30):
        assert lookup(cache, job_id)["complete"] is True  # type: ignore[index]
    assert len(cache) <= 5
    assert lookup(cache, 999) is None


def test_an_older_version_never_replaces_a_newer_one(store: JobStore, running_cache: Any) -> None:
    old = create(store, 40, RUNNING)
    cache = running_cache(store)
    patch_status(store, 40, {**RUNNING, "taskPercent": 80.0})
    wait_for(lambda: cache.documents[40]["task_percent"] == "80.0", 10)
    answered = cache.put(old)  # e.g. a GET that raced the watch
    assert answered["task_percent"] == "80.0" and cache.documents[40]["task_percent"] == "80.0"
    # A deleted job does not come back from a read that started before the deletion.
    store.delete(jobs.job_name(40))
    wait_for(lambda: 40 not in cache.documents, 10)
    cache.put(old)
    assert 40 not in cache.documents


@pytest.mark.parametrize("updated", ["2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00+00:00", "garbage"])
def test_a_hand_written_status_never_stops_the_cache(store: JobStore, running_cache: Any, updated: str) -> None:
    create(store, 50, RUNNING)
    create(store, 51, RUNNING)
    cache = running_cache(store)
    before = metrics.STATE_CACHE_UNREADABLE._value.get()
    try:
        patch_status(store, 50, {"updated": updated})
    except kubernetes.client.ApiException as error:  # the schema's date-time format refuses it
        assert error.status == 422 and updated == "garbage"
        # What an older schema could have let through reaches the cache as a job it cannot read:
        # skipped and counted, and the watch goes on.
        odd = store.get(jobs.job_name(50))
        odd = {**odd, "spec": {**odd["spec"], "jobId": "fifty"},
               "metadata": {**odd["metadata"], "resourceVersion": "999999999"}}
        with pytest.raises(UnreadableJob):
            cache._accept(odd, from_watch=True)
        cache._skip(odd, UnreadableJob("test"))
        assert metrics.STATE_CACHE_UNREADABLE._value.get() > before
    patch_status(store, 51, {**RUNNING, "taskPercent": 90.0})  # after the odd one, on the same watch
    wait_for(lambda: cache.documents.get(51, {}).get("task_percent") == "90.0", 10)
    assert cache.synced.is_set()
    document = lookup(cache, 50)
    assert document is not None and document["job_id"] == 50
    if updated != "garbage":  # any RFC 3339 time Kubernetes accepts reads as the same moment
        assert document["updated"] == "2026-01-01 00:00:00"


def test_a_watch_older_than_the_server_window_relists(emulator: Emulator, store: JobStore,
                                                       running_cache: Any, tmp_path: pathlib.Path) -> None:
    create(store, 60, RUNNING)
    cache = running_cache(store)
    # A restarted server cannot replay what came before it: the watch's version is too old (410).
    stop_emulator(emulator)
    emulator.process = start_emulator(tmp_path, "--data", str(tmp_path / "kubeapi.json"),
                                      port=emulator.port).process
    create(store, 61, RUNNING)
    patch_status(store, 60, {**RUNNING, "taskPercent": 70.0})
    wait_for(lambda: 61 in cache.documents and cache.documents[60]["task_percent"] == "70.0", 20)
    wait_for(cache.synced.is_set, 10)
