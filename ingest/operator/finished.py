"""Finished jobs, watched without being listed.

kopf watches only the jobs in flight (`status.complete!=true`, a selectable field of the CRD), so a
restarted operator reads what is running, not the 100,000 jobs a facility retains. A finished job
still changes now and then - `kubectl delete` (its finalizer waits for the operator's release), an
administrator's edit, our own rollback record - and those changes arrive on this second watch of
`status.complete=true`. It starts from the server's current resourceVersion (a one-item list), so
it lists nothing either. When it cannot resume (410 Gone: the server's window has passed) it starts
again from the current version; what changed in that gap is found by the retention pass
(`sweeper.Retention`), which reads every finished job page by page.

An API server older than 1.31 cannot select on the field: the operator then watches every job, as
before, and this watch is not needed (`selectable`).

A DELETED event on a field-selected watch means the job left the selection or was deleted; one
GET tells the two apart. A job that left (a retried job is unfinished again) is kopf's again.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from ingest import jobs
from ingest.kube import JobStore

log = logging.getLogger(__name__)
Body = dict[str, Any]

FINISHED = jobs.FINISHED_SELECTOR
UNFINISHED = jobs.UNFINISHED_SELECTOR
WATCH_SECONDS = 60


def selectable(store: JobStore) -> bool:
    """Can the server select jobs on `status.complete`? (CRD selectableFields: Kubernetes 1.31+.)"""
    try:
        store.custom.list_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, store.namespace, jobs.PLURAL, field_selector=UNFINISHED, limit=1)
    except ApiException as error:
        if error.status == 400 and "field label" in str(error.body):
            return False
        raise
    return True


class FinishedWatch:
    """Hands every change to a finished job to `changed`, and every deleted job's name to `gone`."""

    def __init__(self, store: JobStore, *, changed: Callable[[Body], None], gone: Callable[[str], None]) -> None:
        self.store = store
        self.changed = changed
        self.gone = gone
        self._stop = threading.Event()
        self.following = threading.Event()  # set once it has a version to watch from
        self._thread = threading.Thread(target=self._run, name="finished-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.current_version()
                    self.following.set()
                version = self._follow(version)
            except ApiException as error:
                if error.status != 410:
                    log.warning("watch of finished jobs restarting: %s", error.reason)
                    self._stop.wait(1.0)
                version = None
            except Exception:  # the watch must outlive any one failure
                log.exception("watch of finished jobs restarting")
                self._stop.wait(1.0)
                version = None

    def current_version(self) -> str:
        page: Any = self.store.custom.list_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, self.store.namespace, jobs.PLURAL, field_selector=FINISHED, limit=1)
        return str(page["metadata"]["resourceVersion"])

    def _follow(self, version: str) -> str:
        for event in self.store.watch(version, timeout_seconds=WATCH_SECONDS, field_selector=FINISHED):
            if self._stop.is_set():
                break
            body = event["object"]
            version = str(body["metadata"]["resourceVersion"])
            if event["type"] == "BOOKMARK":
                continue
            name = body["metadata"]["name"]
            try:
                if event["type"] != "DELETED":
                    self.changed(body)
                elif self.store.get(name) is None:
                    self.gone(name)
            except Exception:
                log.exception("job %s: a change to the finished job failed; the retention pass tries again", name)
        return version
