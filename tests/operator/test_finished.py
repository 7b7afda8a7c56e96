"""Finished jobs in the operator, against the Kubernetes API emulator (real HTTP, the official
client): the watch lists nothing, hands on every change to a finished job, and tells a job that
left the selection (made unfinished again) from one that was deleted; retention reads them a page
at a time, keeps none in memory, and survives an expired continue token."""
from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import kubernetes
import pytest

from ingest import jobs, lifecycle
from ingest.config import Settings
from ingest.kube import JobStore, api_client
from ingest.operator import cleanup, sweeper
from ingest.operator.finished import FinishedWatch
from ingest.operator.reconcile import Reconciler
from ingest.storage import Storage
from tests.local.conftest import Emulator, make_ingestjob, start_emulator, stop_emulator, wait_for

pytestmark = pytest.mark.processes  # each test runs against an emulator process


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


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator that keeps 5 events per resource: a list's continue token expires quickly."""
    started = start_emulator(tmp_path_factory.mktemp("retention"), "--history", "5")
    yield started
    stop_emulator(started)


def test_retention_reads_one_page_a_step_and_goes_on_past_an_expired_token(
        short_history: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    client = api_client(config_file=str(short_history.kubeconfig))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
    settings = Settings.from_env({"INGEST_NAMESPACE": namespace, "INGEST_JOB_RETENTION_DAYS": "30"})
    reconciler = Reconciler(settings, client, Storage(settings))
    store = reconciler.store
    now = datetime.datetime.now(datetime.UTC)
    for job_id in range(1, 11):  # odd ids finished 40 days ago (expired), even ones yesterday
        store.create(make_ingestjob(jobs.job_name(job_id), job_id))
        stamp = jobs.rfc3339(now - datetime.timedelta(days=40 if job_id % 2 else 1))
        store.custom.patch_namespaced_custom_object_status(
            jobs.GROUP, jobs.VERSION, namespace, jobs.PLURAL, jobs.job_name(job_id), {"status": {
                "state": jobs.OK, "task": jobs.INGEST_METADATA, "taskPercent": 100.0, "complete": True,
                "exception": "", "created": stamp, "updated": stamp, "finishedAt": stamp,
                "phase": jobs.PHASE_SUCCEEDED}})
    monkeypatch.setattr(sweeper, "PAGE_SIZE", 4)
    retention = sweeper.Retention(reconciler)

    def names() -> list[str]:
        return sorted(job["metadata"]["name"] for job in store.list())

    retention.step()  # ingest-1, ingest-10, ingest-2, ingest-3 (key order)
    assert retention.token and names() == sorted(jobs.job_name(i) for i in (2, 4, 5, 6, 7, 8, 9, 10))
    assert reconciler.known == {}  # finished jobs are read, never kept
    store.patch(jobs.job_name(10), {"metadata": {"annotations": {"touched": "yes"}}})
    for _ in range(6):  # more events than the emulator keeps: the token's snapshot is gone
        store.patch(jobs.job_name(2), {"metadata": {"annotations": {"touched": str(_)}}})
    retention.step()  # 410: nothing read; it goes on from the same key with the inconsistent token
    assert retention.token and names() == sorted(jobs.job_name(i) for i in (2, 4, 5, 6, 7, 8, 9, 10))
    while retention.token:
        retention.step()
    assert names() == sorted(jobs.job_name(i) for i in (2, 4, 6, 8, 10))
    retention.step()  # the next pass waits for its interval
    assert retention.token is None and names() == sorted(jobs.job_name(i) for i in (2, 4, 6, 8, 10))


def test_retention_leaves_the_staged_data_of_a_job_retried_since_it_was_read(store: JobStore) -> None:
    """The staged-removed mark is a compare-and-swap on the version read: after a retry it gets 409
    and nothing is removed. The object store here is a closed port, so a removal would raise."""
    settings = Settings.from_env({"INGEST_NAMESPACE": store.namespace, "INGEST_STAGED_RETENTION_SECONDS": "1",
                                  "INGEST_S3_ENDPOINT": "127.0.0.1:1", "INGEST_S3_TIMEOUT_SECONDS": "1"})
    reconciler = Reconciler(settings, store.custom.api_client, Storage(settings))
    store.create(make_ingestjob("ingest-3", 3, staged={"bucket": "s", "key": "k", "size": 10}))
    finished = jobs.rfc3339(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2))
    store.custom.patch_namespaced_custom_object_status(jobs.GROUP, jobs.VERSION, store.namespace, jobs.PLURAL,
                                                       "ingest-3", {"status": {
        "state": jobs.FAILED, "task": jobs.INGEST_FILES, "taskPercent": 10.0, "complete": True, "exception": "x",
        "phase": jobs.PHASE_FAILED, "finishedAt": finished, "updated": finished, "created": finished}})
    read = store.get("ingest-3")
    assert read is not None
    _, changed = store.apply("ingest-3", lifecycle.retry, default_attempts=3)
    assert changed
    cleanup.expire(reconciler, lifecycle.Job.of(read), read)
    after = store.get("ingest-3")
    assert after is not None and jobs.STAGED_REMOVED_ANNOTATION not in (after["metadata"].get("annotations") or {})
    assert after["status"]["phase"] == jobs.PHASE_STAGED
