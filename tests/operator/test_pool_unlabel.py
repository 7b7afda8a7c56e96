"""The operator takes a complete job out of the pool's queue by compare-and-swap, against the
Kubernetes API emulator (real HTTP, real 409s): a job retried since the operator saw it complete
keeps its label, so the pool workers still see it."""
from __future__ import annotations

import types
from typing import Any

from ingest import jobs, lifecycle
from ingest.config import Settings
from ingest.kube import JobStore
from ingest.operator.pool import Pool


def pool_of(store: JobStore) -> Pool:
    """The Pool with what it uses of the reconciler: its settings and its job store."""
    settings = Settings.from_env({"INGEST_NAMESPACE": store.namespace})
    return Pool(types.SimpleNamespace(settings=settings, store=store))


def failed_pool_job(store: JobStore, job_id: int) -> dict[str, Any]:
    """A pool job that ended FAILED (its upload broke), as the operator's watch would deliver it."""
    body = jobs.new_job(job_id=job_id, operation="upload", user=None, staged_bucket="s", staged_key="k")
    body["metadata"]["labels"][jobs.POOL_LABEL] = jobs.POOL_WAITING
    store.create(body)
    view = lifecycle.Job.of(store.get(body["metadata"]["name"]))
    patch = lifecycle.upload_failed(view, jobs.now(), task=jobs.UPLOADING, message="the client went away")
    assert patch is not None
    return store.update_status(view.name, lambda job: patch)


def labels(store: JobStore, name: str) -> dict[str, str]:
    return store.get(name)["metadata"].get("labels") or {}


def test_a_complete_job_leaves_the_queue(store: JobStore) -> None:
    job = failed_pool_job(store, 1)
    assert jobs.state_document(job)["complete"]
    pool_of(store).unlabel(job)
    assert jobs.POOL_LABEL not in labels(store, "ingest-1")
    assert labels(store, "ingest-1")[jobs.JOB_ID_LABEL] == "1"


def test_a_job_retried_since_it_was_seen_complete_keeps_its_label(store: JobStore) -> None:
    seen_complete = failed_pool_job(store, 2)
    retried = lifecycle.retry(lifecycle.Job.of(seen_complete), jobs.now(), default_attempts=3)
    assert retried is not None
    store.update_status("ingest-2", lambda job: retried)  # IngestCMD retry, after the event was delivered
    pool_of(store).unlabel(seen_complete)  # a plain merge-patch here would hide the job from the pool
    assert labels(store, "ingest-2")[jobs.POOL_LABEL] == jobs.POOL_WAITING
    assert not jobs.state_document(store.get("ingest-2"))["complete"]


def test_a_stale_version_of_a_job_still_complete_is_unlabelled_on_the_second_try(store: JobStore) -> None:
    stale = failed_pool_job(store, 3)
    store.patch("ingest-3", {"metadata": {"annotations": {"note": "touched"}}})  # a newer version, still complete
    pool_of(store).unlabel(stale)
    assert jobs.POOL_LABEL not in labels(store, "ingest-3")
