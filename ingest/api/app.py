"""The HTTP API: Pacifica's ingest contract on Starlette. Read the routes top to bottom."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.routing import Route

from ingest import ids, kube
from ingest.api.auth import Authentication, load_tokens
from ingest.api.errors import HANDLERS
from ingest.api.services import Services
from ingest.api.state import StateCache, get_state
from ingest.api.move import move
from ingest.api.upload import ingest
from ingest.config import Settings
from ingest.storage import Storage

log = logging.getLogger(__name__)


async def root(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Pacifica Ingest Up and Running"})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the job cache is synced and the object store answers."""
    services: Services = request.app.state.services
    problems = []
    if not services.cache.synced.is_set():
        problems.append("the IngestJob cache has not synced with the Kubernetes API")
    try:
        await asyncio.wait_for(asyncio.to_thread(services.storage.minio.bucket_exists, services.storage.staging), 5)
    except Exception as error:
        problems.append(f"the object store does not answer: {type(error).__name__}")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


def build_services(settings: Settings) -> Services:
    client = kube.api_client(pool_size=64)
    store = kube.JobStore(client, settings.namespace)
    return Services(
        settings=settings,
        jobs=store,
        storage=Storage(settings),
        job_ids=ids.BlockAllocator(client, settings.namespace, ids.JOB_IDS, settings.job_id_block),
        cache=StateCache(store),
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
        app.state.services = services
        log.info("API serving namespace %s, object store %s", settings.namespace, settings.s3_endpoint)
        yield
        services.cache.stop()

    routes = [
        Route("/", root, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/ingest", ingest, methods=["POST"]),
        Route("/upload", ingest, methods=["POST"]),
        Route("/move", move, methods=["POST"]),
        Route("/get_state", get_state, methods=["GET"]),
        Route("/get_state/{job_id}", get_state, methods=["GET"]),
    ]
    middleware = []
    if settings.auth_tokens_file or settings.auth_header:
        tokens = load_tokens(settings.auth_tokens_file) if settings.auth_tokens_file else None
        middleware.append(Middleware(Authentication, tokens=tokens, header=settings.auth_header or None))
    return Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan, middleware=middleware)
