"""``python -m ingest.local.kubeapi``: serve the emulated Kubernetes API until SIGTERM/SIGINT.

Start-up order matters: the ``--data`` snapshot is restored first (so CRDs created through the API
in an earlier run come back), then the system namespaces are ensured, then every CRD file in
``--crds`` is applied over whatever was restored. One line is logged when the server is ready;
on SIGTERM or SIGINT open watches are ended, the server stops, and the state is saved.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import signal
import sys
from typing import Any

import uvicorn
import yaml

from . import persistence
from .cluster import Cluster
from .requestlog import DEFAULT_SIZE, RequestLog
from .resources import Registry
from .server import Api, build_app
from .store import DEFAULT_HISTORY, Store

log = logging.getLogger("ingest.local.kubeapi")


def load_crd_files(folder: pathlib.Path) -> list[dict[str, Any]]:
    crds = []
    for path in sorted(folder.glob("*.y*ml")) + sorted(folder.glob("*.json")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ingest.local.kubeapi",
                                     description="A local Kubernetes API emulator (plain HTTP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--crds", type=pathlib.Path, help="folder of CRD YAML files to load")
    parser.add_argument("--data", type=pathlib.Path, help="persist state in this JSON file")
    parser.add_argument("--bookmark-interval", type=float, default=30.0,
                        help="seconds between BOOKMARKs on watches that allow them")
    parser.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                        help="the compaction window: events kept per resource for resuming watches and "
                             "continuing paginated lists (older ones get 410 Expired)")
    parser.add_argument("--request-log", type=int, default=DEFAULT_SIZE,
                        help="raw requests kept for GET /_emulator/requests")
    return parser.parse_args(argv)


class _Server(uvicorn.Server):
    """uvicorn with our own signal handling: SIGTERM/SIGINT end open watches (so shutdown is
    prompt), stop the server, and let ``main`` save the state and exit 0 - uvicorn's own
    handling would re-raise the signal after shutdown and kill the process before the save."""

    api: Api

    async def serve(self, sockets: Any = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        try:
            await self._serve(sockets)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        self.api.close_streams()
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = Store(history=args.history)
    registry = Registry()
    cluster = Cluster(store, registry)
    if args.data is not None:
        data = persistence.load(args.data)
        if data is not None:
            store.load(data)
    cluster.bootstrap()
    crds = load_crd_files(args.crds) if args.crds else []
    for crd in crds:
        cluster.apply_crd(crd)
    requests = RequestLog(args.request_log)
    usage_file = args.data.with_name(args.data.name + ".usage.json") if args.data is not None else None
    if usage_file is not None and usage_file.exists():
        requests.restore_usage(json.loads(usage_file.read_text()))
    api = Api(cluster, requests, bookmark_interval=args.bookmark_interval, address=f"{args.host}:{args.port}")
    config = uvicorn.Config(build_app(api), host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                            timeout_keep_alive=30)
    server = _Server(config)
    server.api = api

    async def serve() -> None:
        persister = persistence.Persister(store, args.data) if args.data else None
        if persister is not None:
            persister.flush()
        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            log.info("serving the Kubernetes API on http://%s:%d (%d CRDs from %s, data %s, "
                     "resourceVersion %d)", args.host, args.port, len(crds), args.crds,
                     args.data or "in memory", store.rv)
        await task
        if persister is not None:
            persister.flush()
        if usage_file is not None:
            persistence.save(usage_file, requests.usage_rows())

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
