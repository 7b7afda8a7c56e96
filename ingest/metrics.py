"""Prometheus metrics: what an on-call engineer asks - is it up, is it keeping up, where do jobs fail.

Each process has its own registry and serves it itself (the API at `GET /metrics`, the operator on
`INGEST_OPERATOR_METRICS_PORT`), so every replica is one scrape target and no multiprocess mode is
needed. Worker Pods live for one job, too briefly to be scraped: they already write their progress
(step, bytes, files) into the IngestJob status, and the operator, which sees every status change on
its watch, turns that stream into the job metrics (`JobMetrics`). Job ids never become labels;
every label has a small, fixed set of values, initialised to zero where known so `rate()` works
from the first scrape.

Kubernetes API and object-store calls are counted where every call passes, through the clients'
public extension points: an `ApiClient` subclass whose `call_api` counts (`KubernetesCalls`) and a
urllib3 `PoolManager` subclass handed to `Minio(http_client=...)` (`ObjectStoreCalls`), so no call
site has to remember to count and no private attribute of either library is touched.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import kubernetes
import prometheus_client
import urllib3
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest import jobs
from ingest.storage import Storage, make_client

log = logging.getLogger(__name__)

# `_created` series double the series count and answer nothing here.
prometheus_client.disable_created_metrics()

API = CollectorRegistry()
OPERATOR = CollectorRegistry()
for _registry in (API, OPERATOR):
    prometheus_client.ProcessCollector(registry=_registry)
    prometheus_client.PlatformCollector(registry=_registry)
    prometheus_client.GCCollector(registry=_registry)


def _in_both(metric: Any) -> Any:
    """A metric both the API and the operator export (each process fills its own copy)."""
    API.register(metric)
    OPERATOR.register(metric)
    return metric


# The step a job spends between the end of its upload and its worker's first report.
WAITING_FOR_WORKER = "waiting for worker"
STEPS = (jobs.UPLOADING, WAITING_FOR_WORKER, jobs.OPEN_TAR, jobs.LOAD_METADATA, jobs.POLICY_VALIDATION,
         jobs.INGEST_FILES, jobs.MOVE_FILES, jobs.INGEST_METADATA)
OPERATIONS = {jobs.OPERATION_UPLOAD: jobs.UPLOAD_TASKS, jobs.OPERATION_MOVE: jobs.MOVE_TASKS}

# --- buckets (base units: seconds, bytes) ----------------------------------------------------
FAST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STEP_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
JOB_SECONDS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
SIZE_BYTES = tuple(1024 * 4**power for power in range(14))  # 1 KiB .. 64 GiB

# --- API ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "ingest_http_requests_total", "HTTP requests answered, by route template, method and status code.",
    ["handler", "method", "code"], registry=API)
HTTP_DURATION = Histogram(
    "ingest_http_request_duration_seconds", "Time from request to the end of the response, by route template.",
    ["handler", "method"], buckets=REQUEST_SECONDS, registry=API)
JOBS_SUBMITTED = Counter(
    "ingest_jobs_submitted_total", "Jobs the API created (POST /ingest, /upload, /move).", ["operation"], registry=API)
UPLOAD_SIZE = Histogram(
    "ingest_upload_size_bytes", "Bytes received per bundle upload, by outcome (staged, refused, failed).",
    ["outcome"], buckets=SIZE_BYTES, registry=API)
UPLOAD_DURATION = Histogram(
    "ingest_upload_duration_seconds", "Time to receive and stage one bundle upload, by outcome.",
    ["outcome"], buckets=REQUEST_SECONDS, registry=API)
UPLOAD_OUTCOMES = ("staged", "refused", "failed")
GET_STATE_DURATION = Histogram(
    "ingest_get_state_duration_seconds",
    "get_state latency, by where the answer came from (cache, kubernetes, missing).",
    ["source"], buckets=FAST_SECONDS, registry=API)
STATE_CACHE_RESTARTS = Counter(
    "ingest_state_cache_watch_restarts_total", "Times the API's IngestJob watch failed and restarted.", registry=API)
STATE_CACHE_JOBS = Gauge("ingest_state_cache_jobs", "IngestJobs held in the API's get_state cache.", registry=API)
STATE_CACHE_SYNCED = Gauge(
    "ingest_state_cache_synced", "1 when the API's get_state cache is synced with the Kubernetes API.", registry=API)

# --- operator ----------------------------------------------------------------------------------
JOBS_FINISHED = Counter(
    "ingest_jobs_total", "Jobs that reached a final state, by operation, state and the task they ended at.",
    ["operation", "state", "task"], registry=OPERATOR)
BYTES = Counter(
    "ingest_bytes_total", "Bytes of files archived by jobs that completed successfully.",
    ["operation"], registry=OPERATOR)
FILES = Counter(
    "ingest_files_total", "Files archived by jobs that completed successfully.", ["operation"], registry=OPERATOR)
JOB_DURATION = Histogram(
    "ingest_job_duration_seconds", "Time from a job's creation to its final state.",
    ["operation", "state"], buckets=JOB_SECONDS, registry=OPERATOR)
STEP_DURATION = Histogram(
    "ingest_job_step_duration_seconds",
    "Time a job spent in each step it completed, as the operator saw the steps change.",
    ["step"], buckets=STEP_SECONDS, registry=OPERATOR)
WORKER_PODS = Counter("ingest_worker_pods_started_total", "Worker Pods the operator created.", registry=OPERATOR)
WORKER_RETRIES = Counter(
    "ingest_worker_retries_total", "Worker Pods that failed and were retried with a new Pod.", registry=OPERATOR)
STUCK_JOBS = Counter(
    "ingest_stuck_jobs_total", "Stuck jobs the sweeper found, by what was stuck.", ["reason"], registry=OPERATOR)
STUCK_REASONS = ("upload_stalled", "worker_not_started", "worker_pending", "worker_vanished", "unreadable_status")

# --- both --------------------------------------------------------------------------------------
KUBE_REQUESTS = _in_both(Counter(
    "ingest_kubernetes_requests_total", "Requests to the Kubernetes API, by HTTP verb.", ["verb"]))
KUBE_ERRORS = _in_both(Counter(
    "ingest_kubernetes_errors_total",
    "Kubernetes API requests that failed, by kind (conflict and not_found are part of normal operation).", ["kind"]))
S3_REQUESTS = _in_both(Counter(
    "ingest_object_store_requests_total", "Requests to the object store, by HTTP method.", ["method"]))
S3_ERRORS = _in_both(Counter(
    "ingest_object_store_errors_total",
    "Object-store requests that failed after retries, by kind (not_found is part of normal operation).", ["kind"]))
ERROR_KINDS = ("not_found", "conflict", "unauthorized", "forbidden", "invalid", "throttled", "client_error",
               "server_error", "timeout", "connection")


def _initialise() -> None:
    """Zero-valued series for every label value known in advance."""
    for outcome in UPLOAD_OUTCOMES:
        UPLOAD_SIZE.labels(outcome)
        UPLOAD_DURATION.labels(outcome)
    for source in ("cache", "kubernetes", "missing"):
        GET_STATE_DURATION.labels(source)
    for operation, tasks in OPERATIONS.items():
        JOBS_SUBMITTED.labels(operation)
        BYTES.labels(operation)
        FILES.labels(operation)
        JOBS_FINISHED.labels(operation, jobs.OK, jobs.INGEST_METADATA)
        for task in tasks:
            JOBS_FINISHED.labels(operation, jobs.FAILED, task)
        for state in (jobs.OK, jobs.FAILED):
            JOB_DURATION.labels(operation, state)
    for step in STEPS:
        STEP_DURATION.labels(step)
    for reason in STUCK_REASONS:
        STUCK_JOBS.labels(reason)
    for kind in ERROR_KINDS:
        KUBE_ERRORS.labels(kind)
        S3_ERRORS.labels(kind)


_initialise()


# --- calls to the Kubernetes API and the object store ------------------------------------------
def error_kind(status: int) -> str | None:
    """The `kind` label of an HTTP answer, or None when it is a success."""
    if status < 400:
        return None
    named = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid", 429: "throttled"}
    return named.get(status, "server_error" if status >= 500 else "client_error")


class _Answer(Protocol):
    @property
    def status(self) -> int: ...


_Response = TypeVar("_Response", bound=_Answer)


def exception_kind(error: BaseException) -> str:
    """`timeout` or `connection` for a request that got no answer (urllib3 wraps the cause in `reason`)."""
    cause = getattr(error, "reason", None) or error
    # urllib3 derives a refused connection (NewConnectionError) from its timeout class: not a timeout.
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return "connection"
    if isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError)) or isinstance(error, TimeoutError):
        return "timeout"
    return "connection"


def _count(requests: Counter, errors: Counter, method: str, send: Callable[[], _Response]) -> _Response:
    """Count one request by method, and its failure by kind (an HTTP error status or an exception)."""
    requests.labels(method.upper()).inc()
    try:
        response = send()
    except Exception as error:
        errors.labels(exception_kind(error)).inc()
        raise
    kind = error_kind(response.status)
    if kind:
        errors.labels(kind).inc()
    return response


class KubernetesCalls(kubernetes.client.ApiClient):
    """A `kubernetes` ApiClient that counts its requests (watches included) and their failures.

    `call_api` is the client's public method that every generated API method passes through; it
    returns the raw response before the client turns a non-2xx answer into an `ApiException`.
    """

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        send = super().call_api
        return _count(KUBE_REQUESTS, KUBE_ERRORS, method, lambda: send(method, url, *args, **kwargs))


class ObjectStoreCalls(urllib3.PoolManager):
    """A urllib3 pool for the minio SDK (`Minio(http_client=...)`) that counts requests and their failures.

    The SDK has no hook of its own; its HTTP pool is where every call passes once. urllib3 retries
    below `urlopen` (in the connection pool), so a call is counted once, with the outcome after retries.
    """

    def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> urllib3.BaseHTTPResponse:
        send = super().urlopen
        return _count(S3_REQUESTS, S3_ERRORS, method, lambda: send(method, url, *args, **kw))


def instrument_kubernetes(client: kubernetes.client.ApiClient) -> KubernetesCalls:
    """A counting client in place of `client`, talking to the same cluster with the same configuration."""
    counted = KubernetesCalls(client.configuration)
    counted.default_headers.update(client.default_headers)
    counted.user_agent = client.user_agent
    counted.cookie = client.cookie
    client.close()
    return counted


def instrument_object_store(storage: Storage) -> Storage:
    """`storage`, its minio client built anew on a counting pool (same endpoint, timeouts and retries)."""
    storage.minio = make_client(storage.settings, pool_class=ObjectStoreCalls)
    return storage


# --- jobs, from the operator's watch -----------------------------------------------------------
def _seconds(text: str | None) -> float | None:
    moment = jobs.parse_time(text)
    return moment.timestamp() if moment else None


def step_of(status: Mapping[str, Any]) -> str:
    """The step a job is in: its Pacifica task, or the wait between staging and its worker's first report."""
    task = str(status.get("task") or jobs.UPLOADING)
    phase = status.get("phase")
    if phase == jobs.PHASE_STAGED or (phase == jobs.PHASE_RUNNING and task == jobs.UPLOADING):
        return WAITING_FOR_WORKER
    return task


@dataclasses.dataclass
class Seen:
    """What the operator last saw of one job."""

    phase: str
    task: str
    step: str
    complete: bool
    since: float | None  # wall-clock start of `step`; None when it began before this process looked


class JobMetrics(Collector):
    """Job counters and histograms from the stream of IngestJob states the operator watches.

    A finished job is counted once per process, when its final state is seen - including jobs that
    finished (e.g. refused by the API) before the operator's first look, as long as they finished
    after this process started; finished jobs listed at start-up were counted by the run before.
    Step times are the operator's clock between step changes; kopf hands over the latest of events
    that arrive together, so a step shorter than its batch window is folded into the next one.
    Also a collector: `ingest_jobs_in_flight`, computed at scrape time from the same view.
    """

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}
        self.started = int(time.time())
        self.flight_keys: set[tuple[str, str]] = set()

    def observe(self, job: Mapping[str, Any]) -> None:
        """Never raises: a metric must not stand in the way of reconciling the job."""
        try:
            self._observe(job)
        except Exception:
            log.exception("could not derive metrics from job %s", job.get("metadata", {}).get("name"))

    def _observe(self, job: Mapping[str, Any]) -> None:
        name = job["metadata"]["name"]
        status = job.get("status") or {}
        document = jobs.state_document(job)
        now = time.time()
        current = Seen(phase=str(status.get("phase") or jobs.PHASE_UPLOADING), task=document["task"],
                       step=step_of(status), complete=document["complete"], since=None)
        before = self.seen.get(name)
        if before is None:
            if current.step == jobs.UPLOADING:  # an upload begins when the job is made
                current.since = _seconds(status.get("created") or job["metadata"].get("creationTimestamp"))
            self.seen[name] = current
            finished = _seconds(status.get("finishedAt") or status.get("updated"))
            if current.complete and finished is not None and finished >= self.started:
                self.finished(job, document)
            return
        if before.complete:
            return
        if current.complete:
            if document["state"] == jobs.OK and before.since is not None:
                STEP_DURATION.labels(before.step).observe(max(0.0, now - before.since))
            self.finished(job, document)
        elif current.step != before.step:
            if before.since is not None:
                STEP_DURATION.labels(before.step).observe(max(0.0, now - before.since))
            current.since = now
        else:
            current.since = before.since
        self.seen[name] = current

    def finished(self, job: Mapping[str, Any], document: Mapping[str, Any]) -> None:
        status = job.get("status") or {}
        operation = str((job.get("spec") or {}).get("operation") or jobs.OPERATION_UPLOAD)
        state = document["state"]
        JOBS_FINISHED.labels(operation, state, document["task"]).inc()
        created = _seconds(status.get("created") or job["metadata"].get("creationTimestamp"))
        ended = _seconds(status.get("finishedAt") or status.get("updated"))
        if created is not None and ended is not None:
            JOB_DURATION.labels(operation, state).observe(max(0.0, ended - created))
        if state == jobs.OK:
            BYTES.labels(operation).inc(int(status.get("bytesTotal") or 0))
            FILES.labels(operation).inc(int(status.get("filesTotal") or 0))

    def forget(self, name: str) -> None:
        self.seen.pop(name, None)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts: dict[tuple[str, str], int] = {}
        for seen in list(self.seen.values()):
            if not seen.complete:
                key = (seen.phase, seen.task)
                counts[key] = counts.get(key, 0) + 1
        self.flight_keys |= set(counts)
        family = self._family()
        for key in sorted(self.flight_keys):
            family.add_metric(list(key), counts.get(key, 0))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("ingest_jobs_in_flight", "Jobs not yet complete, by phase and Pacifica task.",
                                 labels=["phase", "task"])


JOB_EVENTS = JobMetrics()
OPERATOR.register(JOB_EVENTS)


def serve_operator(port: int) -> Callable[[], None] | None:
    """Serve the operator's registry on `port` (0: not at all); returns how to stop it."""
    if not port:
        return None
    server, _thread = prometheus_client.start_http_server(port, registry=OPERATOR)
    return server.shutdown
