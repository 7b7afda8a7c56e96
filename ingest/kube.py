"""The Kubernetes API as the service's database: a client, and IngestJob reads and guarded writes.

Every status transition is a compare-and-swap: read the job, decide the patch from what is there,
write it with the `metadata.resourceVersion` that was read. A 409 means someone else wrote in
between (another replica, the operator, an administrator's `kubectl patch`), so we read again and
decide again. That is how an administrator's manual FAILED can never be overwritten by a component
that was about to report progress.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from ingest import jobs, lifecycle

log = logging.getLogger(__name__)

# This process among all the service's processes: its Pod (HOSTNAME) and a per-process suffix. It is
# the operator's Lease holder identity and every request's User-Agent, so the API server's audit
# trail says which replica made each write.
IDENTITY = f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"

T = TypeVar("T")
Job = dict[str, Any]
Decide = Callable[[Job], "dict[str, Any] | None"]


def api_client(pool_size: int = 16, config_file: str | None = None, retries: int = 3) -> kubernetes.client.ApiClient:
    """In a Pod: the ServiceAccount; elsewhere: `config_file`, $KUBECONFIG or ~/.kube/config, as kubectl does."""
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not config_file:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(
            config_file=config_file or os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = retries
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"pacifica-ingest/{IDENTITY}"
    return client


def transient(error: BaseException) -> bool:
    """An API server that is restarting, overloaded or briefly unreachable: worth another try."""
    if isinstance(error, ApiException):
        return error.status in (0, 429, 500, 502, 503, 504)
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def retrying(call: Callable[[], T], *, attempts: int = 8, first_delay: float = 0.25) -> T:
    """Run `call`, retrying transient failures with exponential backoff (about 30 s in all)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if not transient(error) or attempt + 1 == attempts:
                raise
            delay = min(8.0, first_delay * 2**attempt)
            log.warning("Kubernetes API unavailable (%s); retrying in %.1f s", type(error).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _document(value: object) -> dict[str, Any]:
    """A custom object as the client returns it: the JSON document (the generated client types it `object`)."""
    return cast(dict[str, Any], value)


def list_pods(client: kubernetes.client.ApiClient, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """Pods as the API serves them (camelCase JSON), Terminating ones included."""
    response = cast(urllib3.HTTPResponse, retrying(lambda: kubernetes.client.CoreV1Api(client).list_namespaced_pod(
        namespace, label_selector=label_selector, _preload_content=False)))
    items: list[dict[str, Any]] = json.loads(response.data).get("items", [])
    return items


def read_pod(client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A Pod as the API serves it (camelCase JSON), or None when it does not exist."""
    try:
        raw = kubernetes.client.CoreV1Api(client).read_namespaced_pod(name, namespace, _preload_content=False)
        response = cast(urllib3.HTTPResponse, raw)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    pod: dict[str, Any] = json.loads(response.data)
    return pod


class JobStore:
    """IngestJobs of one namespace."""

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def _args(self) -> tuple[str, str, str, str]:
        return jobs.GROUP, jobs.VERSION, self.namespace, jobs.PLURAL

    def get(self, name: str) -> Job | None:
        try:
            return _document(retrying(lambda: self.custom.get_namespaced_custom_object(*self._args(), name)))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create(self, body: Job) -> Job:
        """Create a job; the status it carries is written through the status subresource."""
        status = body.get("status")
        name = body["metadata"]["name"]
        try:
            created = retrying(lambda: self.custom.create_namespaced_custom_object(*self._args(), body))
        except ApiException as error:
            # A retried create whose first attempt went through: the object is ours if it is bare.
            existing = self.get(name) if error.status == 409 else None
            if existing is None or existing.get("status"):
                raise
            created = existing
        if status:
            created = retrying(lambda: self.custom.patch_namespaced_custom_object_status(
                *self._args(), name, {"status": status}
            ))
        return _document(created)

    def list(self, label_selector: str | None = None) -> list[Job]:
        items: list[Job] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500}
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            page = _document(self.custom.list_namespaced_custom_object(*self._args(), **kwargs))
            items.extend(page.get("items", []))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def patch(self, name: str, body: dict[str, Any]) -> Job:
        return _document(self.custom.patch_namespaced_custom_object(*self._args(), name, body))

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(*self._args(), name)
        except ApiException as error:
            if error.status != 404:
                raise

    def update_status(self, name: str, decide: Decide, *, attempts: int = 20, known: Job | None = None) -> Job | None:
        """Read, decide, write with the read resourceVersion; again on 409.

        `decide` returns the status fields to merge, or None to write nothing. Returns the job as
        written (or as read when nothing was written); None when the job does not exist. `known`, a
        version this process wrote or watched last, saves the first read: if it is stale the write
        gets 409 and the loop reads as usual.
        """
        for attempt in range(attempts):
            job, known = (known, None) if known is not None else (self.get(name), None)
            if job is None:
                return None
            change = decide(job)
            if not change:
                return job
            body = {
                "metadata": {"resourceVersion": job["metadata"]["resourceVersion"]},
                "status": change,
            }
            try:
                write = functools.partial(self.custom.patch_namespaced_custom_object_status, *self._args(), name, body)
                return _document(retrying(write))
            except ApiException as error:
                if error.status != 409:
                    raise
                time.sleep(min(0.5, 0.01 * 2**attempt))
        raise RuntimeError(f"IngestJob {name}: status kept changing under {attempts} attempts")

    def apply(self, name: str, transition: Callable[..., dict[str, Any] | None], *, known: Job | None = None,
              **facts: Any) -> tuple[Job | None, bool]:
        """Move the job by a `lifecycle` transition (compare-and-swap); (the job, whether it was written).

        The transition sees the job as read and the time of the decision; it returns None when it
        does not apply (the job moved on, or is no longer the caller's): then nothing is written."""
        written = False

        def decide(body: Job) -> dict[str, Any] | None:
            nonlocal written
            patch = transition(lifecycle.Job.of(body), jobs.now(), **facts)
            written = bool(patch)
            return patch

        return self.update_status(name, decide, known=known), written

    def watch(self, resource_version: str | None, timeout_seconds: int = 300,
              label_selector: str | None = None, field_selector: str | None = None) -> Iterator[dict[str, Any]]:
        """Raw watch events of the namespace's IngestJobs from `resource_version`."""
        watcher = kubernetes.watch.Watch()
        kwargs: dict[str, Any] = {"timeout_seconds": timeout_seconds, "allow_watch_bookmarks": True}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if resource_version:
            kwargs["resource_version"] = resource_version
        for event in watcher.stream(self.custom.list_namespaced_custom_object, *self._args(), **kwargs):
            if event["type"] == "ERROR":  # e.g. 410 Gone: the caller lists again
                body = event["object"] if isinstance(event["object"], dict) else {"message": str(event["object"])}
                raise ApiException(status=body.get("code") or 500, reason=str(body.get("message")))
            yield event
