"""``python -m ingest.local.objectstore``: run a store by hand, or a Ceph tool against one.

For debugging, or to run a store outside the local stack::

    python -m ingest.local.objectstore up --data DIR --port 9000     # foreground; Ctrl-C stops it
    python -m ingest.local.objectstore status --data DIR
    python -m ingest.local.objectstore down --data DIR
    python -m ingest.local.objectstore ceph --data DIR -- -s           # also radosgw-admin, rados
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .cluster import ObjectStore
from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, REGION
from .errors import ObjectStoreError
from .processes import free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.local.objectstore",
                                     description="A local S3 server: Ceph RGW as a one-node cluster.")
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "ceph", "radosgw-admin", "rados"),
        help="up (foreground), down, status; or run a Ceph tool against the cluster",
    )
    parser.add_argument("--data", type=Path, required=True, help="cluster folder (created on first up)")
    parser.add_argument("--port", type=int, help="S3 port (default: last used, else 9000)")
    parser.add_argument("--mon-port", type=int, help="monitor port (default: last used, else a free port)")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--cache-dir", type=Path, help="package cache (default: $INGEST_CACHE_DIR or ~/.cache/...)")
    parser.add_argument("--timeout", type=float, default=180.0)
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.args = argv[split + 1 :]  # for ceph/radosgw-admin/rados

    try:
        last = json.loads((args.data / "state.json").read_text())
    except (OSError, ValueError):
        last = {}
    store = ObjectStore(
        data_dir=args.data,
        port=args.port or last.get("port") or 9000,
        mon_port=args.mon_port or last.get("mon_port") or free_port(),
        access_key=args.access_key,
        secret_key=args.secret_key,
        cache_dir=args.cache_dir,
    )
    if args.command == "down":
        store.stop()
        print("stopped")
        return 0
    if args.command in ("ceph", "radosgw-admin", "rados"):
        cmd, env = store.command(args.command, *args.args)
        return subprocess.run(cmd, env=env).returncode
    if args.command == "status":
        pids = store.pids()
        print(json.dumps({"running": store.running(), "endpoint": store.endpoint, "pids": pids}, indent=1))
        return 0 if pids else 3

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        store.start(timeout=args.timeout)
        print(
            f"S3 at http://{store.endpoint} (region {REGION}) access key {store.access_key!r}, "
            f"secret key {store.secret_key!r}; up in {time.monotonic() - t0:.1f} s; Ctrl-C stops it",
            flush=True,
        )
        while not stop.wait(1.0):
            if not store.running():
                print(f"a daemon exited: {store.pids()}", file=sys.stderr)
                return 1
        return 0
    except ObjectStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.stop()


if __name__ == "__main__":
    sys.exit(main())
