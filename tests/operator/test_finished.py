"""The operator's watch of finished jobs, against the Kubernetes API emulator (real HTTP, the
official client): it lists nothing, hands on every change to a finished job, and tells a job
that left the selection (made unfinished again) from one that was deleted."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from ingest import jobs
from ingest.kube import JobStore, api_client
from ingest.operator.finished import FinishedWatch
from tests.local.conftest import Emulator, make_ingestjob, start_emulator, stop_emulator, wait_for


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    started = start_emulator(tmp_path_factory.mktemp("finished"))
    yield started
    stop_emulator(started)


@pytest.fixture()
def store(emulator: Emulator) -> JobStore:
    client = api_client(config_file=str(emulator.kubeconfig))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
    return JobStore(client, namespace)


def finish(store: JobStore, name: str, complete: bool = True) -> None:
    store.custom.patch_namespaced_custom_object_status(
        jobs.GROUP, jobs.VERSION, store.namespace, jobs.PLURAL, name, {"status": {"complete": complete}})


def test_changes_to_finished_jobs_arrive_and_deletions_are_told_from_leaving(store: JobStore) -> None:
    old = make_ingestjob("ingest-1", 1)  # finished before the watch starts: never listed
    old["metadata"]["finalizers"] = [jobs.FINALIZER]
    store.create(old)
    finish(store, "ingest-1")
    changed: list[tuple[str, bool, bool]] = []
    gone: list[str] = []
    watch = FinishedWatch(store, gone=gone.append, changed=lambda body: changed.append((
        body["metadata"]["name"], bool(body.get("status", {}).get("complete")),
        bool(body["metadata"].get("deletionTimestamp")))))
    watch.start()
    try:
        assert watch.following.wait(10)
        store.create(make_ingestjob("ingest-2", 2))
        finish(store, "ingest-2")  # finishes: enters the selection
        finish(store, "ingest-2", complete=False)  # retried: leaves it, but is not gone
        store.create(make_ingestjob("ingest-3", 3))
        finish(store, "ingest-3")
        store.delete("ingest-3")  # no finalizer: deleted at once
        store.delete("ingest-1")  # our finalizer: marked, waiting for the release
        wait_for(lambda: len(changed) == 3 and gone == ["ingest-3"], timeout=15)
        assert changed == [("ingest-2", True, False), ("ingest-3", True, False), ("ingest-1", True, True)]
    finally:
        watch.stop()
    assert store.get("ingest-2") is not None
