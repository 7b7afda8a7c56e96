"""The burst workload: many tiny bundles, as instruments send them, in both worker modes.

Each client posts a bundle of one 30-byte file, polls `get_state` every 20 ms until the job is
complete, and posts the next; a run is N clients sharing B bundles. Jobs/s is bundles over the
wall time of the run; latency is POST start -> complete per bundle (p50, p95). The same stack runs
both modes: the API and the operator are restarted with INGEST_WORKER_MODE=pod (one worker Pod
per job, the baseline) and then with the default, `pool`. A few bundles per run warm it up (first
Pod start, pool scale-up) and are not counted. The 1-minute load average before each run is
printed: the machine may be shared.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import statistics
import tarfile
import threading
import time
from typing import Any

import httpx

from ingest.local.launcher import Stack

MODES = ("pod", "pool")
CLIENTS = (1, 10)
POLL_SECONDS = 0.02
# (mode, clients) -> (what, met?) for the default mode, as the issue states them.
TARGETS = {
    ("pool", 10): ("jobs/s >= 10, p50 < 1 s", lambda r: r["jobs_per_second"] >= 10 and r["p50_seconds"] < 1),
    ("pool", 1): ("p50 < 0.4 s", lambda r: r["p50_seconds"] < 0.4),
}


def tiny_bundle(serial: int) -> bytes:
    """One 30-byte file (distinct per bundle) and its metadata.txt, metadata last as the bundler writes."""
    data = f"run {serial:08d} of the instrument\n".encode()[:30].ljust(30, b".")
    metadata = [
        {"destinationTable": "Transactions.submitter", "value": 10},
        {"destinationTable": "Transactions.project", "value": "1234a"},
        {"destinationTable": "Transactions.instrument", "value": 54},
        {"destinationTable": "Files", "name": "reading.txt", "subdir": f"burst/{serial}", "size": len(data),
         "hashtype": "sha1", "hashsum": hashlib.sha1(data).hexdigest(), "mimetype": "text/plain",
         "ctime": "2026-01-01T00:00:00", "mtime": "2026-01-01T00:00:00"},
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = ((f"data/burst/{serial}/reading.txt", data), ("metadata.txt", json.dumps(metadata).encode()))
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 1_767_225_600, 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def one_job(client: httpx.Client, body: bytes) -> tuple[float, int, str]:
    """POST, then poll until complete: (seconds, job id, final state)."""
    started = time.perf_counter()
    response = client.post("/upload", content=body, headers={"Content-Type": "application/octet-stream"})
    response.raise_for_status()
    job_id = response.json()["job_id"]
    while True:
        document = client.get("/get_state", params={"job_id": job_id}).json()
        if document.get("complete"):
            return time.perf_counter() - started, job_id, document["state"]
        time.sleep(POLL_SECONDS)


def run(api_url: str, *, clients: int, bundles: int, first_serial: int) -> dict[str, Any]:
    serials = iter(range(first_serial, first_serial + bundles))
    lock = threading.Lock()
    results: list[tuple[float, int, str]] = []

    def client_loop() -> None:
        with httpx.Client(base_url=api_url, timeout=120) as client:
            while True:
                with lock:
                    serial = next(serials, None)
                if serial is None:
                    return
                outcome = one_job(client, tiny_bundle(serial))
                with lock:
                    results.append(outcome)

    load = os.getloadavg()[0]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    seconds = sorted(result[0] for result in results)
    failed = [result[1] for result in results if result[2] != "OK"]
    return {
        "clients": clients, "bundles": len(results), "failed": len(failed), "wall_seconds": round(wall, 2),
        "jobs_per_second": round(len(results) / wall, 2),
        "p50_seconds": round(statistics.median(seconds), 3),
        "p95_seconds": round(seconds[max(0, int(0.95 * len(seconds)) - 1)], 3),
        "load_average_before": round(load, 2),
        "slowest": [(round(result[0], 2), result[1]) for result in sorted(results, reverse=True)[:5]],  # (s, job id)
    }


def switch_mode(stack: Stack, mode: str) -> None:
    """Restart the API and the operator with INGEST_WORKER_MODE=mode (workers follow the operator)."""
    stack.env["INGEST_WORKER_MODE"] = mode
    for component in ("api", "operator"):
        stack.stop(component)
    for component in ("operator", "api"):
        stack.start(component, timeout=120)


def burst(stack: Stack, *, bundles: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    serial = 1
    original = stack.env.get("INGEST_WORKER_MODE")
    try:
        for mode in MODES:
            switch_mode(stack, mode)
            for clients in CLIENTS:
                warm = run(stack.api_url, clients=clients, bundles=2 * clients, first_serial=serial)
                serial += warm["bundles"]
                print(f"  {mode}, {clients} clients ...", flush=True)
                result = run(stack.api_url, clients=clients, bundles=bundles, first_serial=serial)
                serial += bundles
                results[f"{mode}/{clients}"] = {"mode": mode, **result}
                print("  " + line(result | {"mode": mode}), flush=True)
    finally:
        if original is None:
            stack.env.pop("INGEST_WORKER_MODE", None)
        else:
            stack.env["INGEST_WORKER_MODE"] = original
        switch_mode(stack, original or "pool")
    print()
    print(table(results))
    return {"runs": results}


def line(r: dict[str, Any]) -> str:
    return (f"{r['mode']:<5} {r['clients']:>3} clients {r['bundles']:>4} bundles  {r['jobs_per_second']:>6.2f} jobs/s  "
            f"p50 {r['p50_seconds']:.3f} s  p95 {r['p95_seconds']:.3f} s  failed {r['failed']}  "
            f"(load {r['load_average_before']})")


def table(runs: dict[str, Any]) -> str:
    lines = ["| mode | clients | bundles | jobs/s | latency p50 | p95 | load avg before |",
             "|---|---|---|---|---|---|---|"]
    for r in runs.values():
        lines.append(f"| {r['mode']} | {r['clients']} | {r['bundles']} | {r['jobs_per_second']:.2f} | "
                     f"{r['p50_seconds']:.3f} s | {r['p95_seconds']:.3f} s | {r['load_average_before']} |")
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(workload, ours, target, met) for the table of `python -m benchmarks`; pod mode is the baseline."""
    out = []
    runs = result["runs"]
    for (mode, clients), (what, check) in TARGETS.items():
        r = runs.get(f"{mode}/{clients}")
        if r is None:
            continue
        base = runs.get(f"pod/{clients}")
        ours = f"{r['jobs_per_second']:.2f} jobs/s, p50 {r['p50_seconds']:.3f} s, p95 {r['p95_seconds']:.3f} s"
        if base:
            ours += f" (pod mode: {base['jobs_per_second']:.2f} jobs/s, p50 {base['p50_seconds']:.2f} s)"
        label = f"burst ({mode}, {clients} clients, {r['bundles']} x 30 B)"
        out.append((label, ours, what, check(r) and r["failed"] == 0))
    return out
