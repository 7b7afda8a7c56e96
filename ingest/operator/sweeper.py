"""The sweeper: what no event announces - limits passing, Pods vanishing while nobody watched,
a rollback that failed and must be tried again, retention running out.

Every few seconds it runs the reconciler over the jobs the watch has shown (no listing: the cost
is a pass over memory, plus API calls only where something is due). One job that cannot be read
or reconciled is logged and skipped; it never stops the sweep for the others.

Finished jobs with no Pods left are not in memory (`Reconciler.settle`), and kopf does not watch
them (handlers.py); a change to one arrives on `finished.FinishedWatch`. Every few minutes
`Retention` reads them page by page (`fieldSelector=status.complete=true`, `limit`), one page a
second, for retention and for whatever that watch missed: memory and the cost per second are one
page however many jobs are retained (a pass over 100,000 takes a few minutes).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from ingest import jobs, logs
from ingest.operator.finished import FINISHED
from ingest.operator.reconcile import Reconciler

log = logging.getLogger(__name__)


def sweep(reconciler: Reconciler) -> None:
    for name in list(reconciler.known):
        with logs.job(logs.job_id_of_object(name)):
            try:
                reconciler.reconcile(name)
            except Exception:
                log.exception("job %s: reconcile failed; trying again on the next sweep", name)
    try:
        reconciler.pool.scale()
    except Exception:
        log.exception("could not scale the pool; trying again on the next sweep")


PAGE_SIZE = 500
PASS_INTERVAL = 300.0  # finished jobs age out over days; a pass starts at most this often
RETENTION_DELAY = 5.0  # the first pass begins after the first sweep of the jobs in flight
RETENTION_PAGE_INTERVAL = 1.0  # seconds between pages


class Retention:
    """Passes over the finished jobs, one page per `step()`: the cost per step is one page
    whatever the number retained; only the length of a pass grows with it.

    A pass's continue token may expire between pages (a real server keeps a list's snapshot for
    about five minutes): the 410 carries a token to go on from the same key without the snapshot,
    which retention does not need; without one the pass starts over.
    """

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.token: str | None = None
        self.next_pass = 0.0
        self.began = 0.0
        self.read = 0

    def step(self) -> None:
        if self.token is None:
            if time.monotonic() < self.next_pass:
                return
            self.began, self.read = time.monotonic(), 0
            self.next_pass = self.began + PASS_INTERVAL
        kwargs: dict[str, Any] = {"field_selector": FINISHED, "limit": PAGE_SIZE}
        if self.token:
            kwargs["_continue"] = self.token
        try:
            page: Any = self.reconciler.store.custom.list_namespaced_custom_object(
                jobs.GROUP, jobs.VERSION, self.reconciler.settings.namespace, jobs.PLURAL, **kwargs)
        except ApiException as error:
            if error.status != 410:
                raise
            self.token = inconsistent_token(error)
            if self.token is None:
                self.next_pass = 0.0
            return
        for body in page.get("items", []):
            self.retain(body)
        self.read += len(page.get("items", []))
        self.token = (page.get("metadata") or {}).get("continue") or None
        if self.token is None:
            log.info("retention pass over %d finished jobs took %.0f s", self.read, time.monotonic() - self.began)

    def retain(self, body: dict[str, Any]) -> None:
        reconciler = self.reconciler
        name = body["metadata"]["name"]
        if name in reconciler.known:
            return  # the watch's copy is at least as new
        with logs.job(logs.job_id_of_object(name)):
            try:
                reconciler.known[name] = body
                reconciler.reconcile(name)
            except Exception:
                log.exception("job %s: retention failed; trying again on the next pass", name)
            finally:
                reconciler.settle(name)


def inconsistent_token(error: ApiException) -> str | None:
    try:
        return (json.loads(error.body or "{}").get("metadata") or {}).get("continue") or None
    except (ValueError, AttributeError):
        return None
