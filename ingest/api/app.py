"""The HTTP API: Pacifica's ingest contract on Starlette. Read the routes top to bottom."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import kubernetes
import prometheus_client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest import ids, kube, logs, metrics
from ingest.api.admin import act
from ingest.api.auth import Authentication, authentication_options
from ingest.api.budget import MemoryBudget
from ingest.api.console import ConsoleFiles
from ingest.api.errors import HANDLERS
from ingest.api.jobdetail import get_job
from ingest.api.joblist import list_jobs
from ingest.api.move import move
from ingest.api.openapi import openapi
from ingest.api.services import Services
from ingest.api.state import StateCache, get_state
from ingest.api.tus import collection_endpoint, upload_endpoint
from ingest.api.upload import ingest
from ingest.config import Settings
from ingest.storage import Storage

log = logging.getLogger(__name__)
# The methods a metric label may name; anything else is "other" (labels must stay few).
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"})


async def root(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Pacifica Ingest Up and Running"})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the job cache is synced, the Kubernetes API answers now, and the object store answers.

    The Kubernetes API is asked for `/version`: the cheapest request there is (no RBAC, no etcd
    read), enough to know this replica can reach it; the synced cache already proves it could read jobs.
    """
    services: Services = request.app.state.services
    problems = []
    if not services.cache.synced.is_set():
        problems.append("the IngestJob cache has not synced with the Kubernetes API")
    try:
        version = kubernetes.client.VersionApi(services.jobs.client)
        await asyncio.wait_for(asyncio.to_thread(version.get_code, _request_timeout=5), 6)
    except Exception as error:
        problems.append(f"the Kubernetes API does not answer: {type(error).__name__}")
    try:
        await asyncio.wait_for(asyncio.to_thread(services.storage.minio.bucket_exists, services.storage.staging), 5)
    except Exception as error:
        problems.append(f"the object store does not answer: {type(error).__name__}")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics_endpoint(request: Request) -> Response:
    return Response(prometheus_client.generate_latest(metrics.API), media_type=prometheus_client.CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware: count and time every request by route template (never by raw path: a
    client's typo or a job id must not become a new series)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def record_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            handler = getattr(route, "path", None) or "other"
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.HTTP_REQUESTS.labels(handler, method, str(code)).inc()
            metrics.HTTP_DURATION.labels(handler, method).observe(time.perf_counter() - started)


def build_services(settings: Settings) -> Services:
    client = metrics.instrument_kubernetes(kube.api_client(pool_size=64))
    store = kube.JobStore(client, settings.namespace)
    return Services(
        settings=settings,
        jobs=store,
        storage=metrics.instrument_object_store(Storage(settings)),
        job_ids=ids.BlockAllocator(client, settings.namespace, ids.JOB_IDS, settings.job_id_block),
        cache=StateCache(store, finished=settings.state_cache_finished),
        budget=MemoryBudget(settings.api_memory_budget_bytes),
    )


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every upload keeps a thread for the S3 SDK; short blocking calls (Kubernetes API) must
        # not queue behind them, so the shared pool is sized well above the default.
        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(64))
        services = build_services(settings)
        try:
            await asyncio.to_thread(services.storage.ensure_buckets)
        except Exception as error:
            log.warning("object store not reachable at start-up (%s); /readyz will say so", error)
        services.cache.start()
        metrics.STATE_CACHE_JOBS.set_function(lambda: len(services.cache))
        metrics.STATE_CACHE_SYNCED.set_function(lambda: 1 if services.cache.synced.is_set() else 0)
        metrics.MEMORY_BUDGET_USED.set_function(lambda: services.budget.used)
        metrics.MEMORY_BUDGET_TOTAL.set_function(lambda: services.budget.total)
        metrics.MEMORY_BUDGET_REFUSED.set_function(lambda: services.budget.refused)
        app.state.services = services
        log.info("API serving namespace %s, object store %s", settings.namespace, settings.s3_endpoint)
        yield
        services.cache.stop()

    routes = [
        Route("/", root, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/ingest", ingest, methods=["POST"]),
        Route("/upload", ingest, methods=["POST"]),
        Route("/move", move, methods=["POST"]),
        Route("/get_state", get_state, methods=["GET"]),
        Route("/get_state/{job_id}", get_state, methods=["GET"]),
        Route("/jobs", list_jobs, methods=["GET"]),
        Route("/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/jobs/{job_id}/{action}", act, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/uploads", collection_endpoint, methods=["POST", "OPTIONS"]),
        Route("/uploads/", collection_endpoint, methods=["POST", "OPTIONS"]),
        Route("/uploads/{upload_id}", upload_endpoint, methods=["HEAD", "PATCH", "DELETE", "OPTIONS"]),
        Mount("/ui", ConsoleFiles(), name="ui"),  # "/ui" redirects to "/ui/"
    ]
    middleware = [Middleware(RequestMetrics)]  # first: it sees every answer, 401s included
    auth = authentication_options(settings)  # refuses unsafe settings before the API serves anything
    if auth is not None:
        logs.add_secrets(auth["tokens"] or {})
        middleware.append(Middleware(Authentication, **auth))
    return Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan, middleware=middleware)
