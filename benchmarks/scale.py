"""Years of jobs: the service with 100,000 retained IngestJobs against the same with 1,000.

A facility keeps finished jobs for weeks (INGEST_JOB_RETENTION_DAYS), so the API and the operator
must cost what is in flight, not what is retained. For each size the benchmark starts a local
stack (`ingest.local.launcher.Stack`, free ports, a temporary folder) whose Kubernetes API
emulator is loaded with that many finished IngestJobs (built with the emulator's own rules,
schema validation included, and saved as its `--data` file), then:

- checks the stack works at that size: three small bundles uploaded and completed;
- restarts the API and measures the time to ready (`/readyz` answers 200: cache synced, the
  Kubernetes API and the object store answering);
- restarts the operator with a job waiting for it (uploaded while the operator was down) and
  measures the time until it acts on that job (its worker Pod started: the phase leaves Staged);
- once the operator's retention pass is under way (it reads a page of finished jobs a second),
  measures `get_state` latency (sequential requests over one keep-alive connection) for old jobs
  (random finished ones: beyond the cache, read from the Kubernetes API) and new ones (in flight
  or just finished: from the cache);
- reads the API's and the operator's RSS from /proc after all that.

Wall-clock start-up times depend on the machine's load (imports alone take seconds on a busy
2-core machine), so the CPU seconds each process spent until ready are printed beside them.

The 1,000-job stack is the baseline, measured in the same run. Targets: RSS at 100,000 within
1.5x of RSS at 1,000; ready in under 10 s; get_state p99 under 25 ms.

    python -m benchmarks --only scale [--quick] [--json FILE]
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ingest import ids, jobs
from ingest.kube import JobStore, api_client
from ingest.local.kubeapi import persistence
from ingest.local.kubeapi.__main__ import load_crd_files
from ingest.local.kubeapi.cluster import Cluster
from ingest.local.kubeapi.resources import Registry
from ingest.local.kubeapi.store import Store
from ingest.local.launcher import Stack, parse_ports
from ingest.operator.sweeper import RETENTION_DELAY
from tests.integration.bundles import bundle
from tests.integration.helpers import wait_for as wait

REPO = Path(__file__).resolve().parents[1]
SIZES = (1_000, 100_000)
QUICK_SIZES = (100, 2_000)
REQUESTS = 1_000
RSS_RATIO, READY_SECONDS, P99_MS = 1.5, 10.0, 25.0


def seed(path: Path, namespace: str, count: int) -> None:
    """The emulator's data file with `count` finished jobs (ids 1..count) and the id counter past them."""
    store, registry = Store(), Registry()
    cluster = Cluster(store, registry)
    cluster.bootstrap()
    for crd in load_crd_files(REPO / "crds"):
        cluster.apply_crd(crd)
    cluster.create(cluster.namespaces, None, {"metadata": {"name": namespace}})
    configmaps = cluster.resolve("", "v1", "configmaps")
    cluster.create(configmaps, namespace, {"metadata": {"name": ids.COUNTER_CONFIGMAP},
                                           "data": {ids.JOB_IDS: str(count + 1)}})
    resource = cluster.resolve(jobs.GROUP, jobs.VERSION, jobs.PLURAL)
    finished = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    stamp = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    for job_id in range(1, count + 1):
        name = jobs.job_name(job_id)
        cluster.create(resource, namespace, {
            "apiVersion": jobs.API_VERSION, "kind": jobs.KIND,
            "metadata": {"name": name, "labels": {jobs.JOB_ID_LABEL: str(job_id)}},
            "spec": {"jobId": job_id, "operation": "upload"}})
        cluster.patch(resource, namespace, name, "merge", {"status": {
            "state": jobs.OK, "task": jobs.INGEST_METADATA, "taskPercent": 100.0, "complete": True,
            "exception": "", "created": stamp, "updated": stamp, "finishedAt": stamp,
            "phase": jobs.PHASE_SUCCEEDED}}, subresource="status")
    persistence.save(path, store.dump())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: what start-up cost, whatever the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def upload(api: httpx.Client, index: int) -> int:
    body, _ = bundle({f"scale/{index}.txt": f"file {index}".encode()})
    response = api.post("/upload", content=body, headers={"Content-Type": "application/octet-stream"})
    response.raise_for_status()
    return int(response.json()["job_id"])


def latencies(api: httpx.Client, job_ids: list[int]) -> dict[str, float]:
    times = []
    for job_id in job_ids:
        started = time.perf_counter()
        response = api.get("/get_state", params={"job_id": job_id})
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}


def measure(count: int, folder: Path) -> dict[str, Any]:
    stack = Stack(folder, ports=parse_ports("auto"))
    began = time.perf_counter()
    seed(folder / "kubeapi.json", stack.namespace, count)
    result: dict[str, Any] = {"jobs": count, "seed_seconds": round(time.perf_counter() - began, 1)}
    try:
        began = time.perf_counter()
        stack.start("kubeapi", timeout=900)  # loading 100,000 objects from its data file takes a while
        result["kubeapi_load_seconds"] = round(time.perf_counter() - began, 1)
        stack.up()
        store = JobStore(api_client(config_file=str(stack.kubeconfig())), stack.namespace)
        with httpx.Client(base_url=stack.api_url, timeout=120) as api:
            def complete(job_id: int) -> bool:
                return bool(api.get("/get_state", params={"job_id": job_id}).json().get("complete"))

            began = time.perf_counter()
            new = [upload(api, index) for index in range(3)]
            for job_id in new:  # a fresh operator first digests every retained job kopf lists
                wait(lambda job_id=job_id: complete(job_id), 900, f"job {job_id}")
            result["first_jobs_complete_seconds"] = round(time.perf_counter() - began, 1)

            stack.stop("api")
            started = time.perf_counter()
            stack.start("api", timeout=300)
            result["api_ready_seconds"] = round(time.perf_counter() - started, 2)
            result["api_ready_cpu_seconds"] = cpu_seconds(stack.pids["api"])

            stack.stop("operator")
            waiting = upload(api, 99)
            started = time.perf_counter()
            stack.start("operator", timeout=300)

            def acted() -> bool:
                job = store.get(jobs.job_name(waiting))
                return bool(job) and (job.get("status") or {}).get("phase") != jobs.PHASE_STAGED

            wait(acted, 300, "the restarted operator to start a worker")
            result["operator_ready_seconds"] = round(time.perf_counter() - started, 2)
            result["operator_ready_cpu_seconds"] = cpu_seconds(stack.pids["operator"])
            new.append(waiting)
            wait(lambda: complete(waiting), 120, f"job {waiting}")
            # Timed while the operator's retention pass reads finished jobs (a page a second).
            time.sleep(max(0.0, started + RETENTION_DELAY + 15 - time.perf_counter()))

            rng = random.Random(count)
            busy = {name: cpu_seconds(stack.pids[name]) for name in ("kubeapi", "operator", "api")}
            began = time.perf_counter()
            for age, job_ids in (("old", [rng.randint(1, count) for _ in range(REQUESTS)]),
                                 ("new", [new[i % len(new)] for i in range(REQUESTS)])):
                spent = cpu_seconds(stack.pids["api"])
                result[f"get_state_{age}"] = latencies(api, job_ids)
                # The API's own CPU per request: its cost, whatever else the machine is running.
                result[f"get_state_{age}"]["api_cpu_ms"] = round(
                    (cpu_seconds(stack.pids["api"]) - spent) * 1000 / len(job_ids), 2)
            # What each process spent while get_state was timed: the emulator's and the operator's
            # background work (saves, retention) competes with the API for this machine's 2 cores.
            result["cpu_share_during_get_state"] = {
                name: round((cpu_seconds(stack.pids[name]) - before) / (time.perf_counter() - began), 2)
                for name, before in busy.items()}
            result["api_rss_mib"] = round(rss_mib(stack.pids["api"]), 1)
            result["operator_rss_mib"] = round(rss_mib(stack.pids["operator"]), 1)
            result["kubeapi_rss_mib"] = round(rss_mib(stack.pids["kubeapi"]), 1)
    finally:
        stack.down()
    return result


@dataclasses.dataclass
class Row:
    what: str
    baseline: float
    ours: float
    target: str
    met: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.met else "MISS"


def rows(small: dict[str, Any], large: dict[str, Any]) -> list[Row]:
    out = []
    for key, name in (("api_rss_mib", "API RSS (MiB)"), ("operator_rss_mib", "operator RSS (MiB)")):
        out.append(Row(name, small[key], large[key], f"<= {RSS_RATIO}x", large[key] <= RSS_RATIO * small[key]))
    for key, name in (("api_ready_seconds", "API ready after restart (s)"),
                      ("operator_ready_seconds", "operator acting after restart (s)")):
        out.append(Row(name, small[key], large[key], f"< {READY_SECONDS:.0f} s", large[key] < READY_SECONDS))
    for key, name in (("api_ready_cpu_seconds", "API CPU seconds to ready"),
                      ("operator_ready_cpu_seconds", "operator CPU seconds to acting")):
        out.append(Row(name, small[key], large[key], "", True))
    for age in ("old", "new"):
        for stat in ("p50_ms", "p99_ms"):
            key = f"get_state_{age}"
            target = f"< {P99_MS:.0f} ms" if stat == "p99_ms" else ""
            met = large[key][stat] < P99_MS if stat == "p99_ms" else True
            out.append(Row(f"get_state {age} jobs {stat.split('_')[0]} (ms)", small[key][stat], large[key][stat],
                           target, met))
    for age in ("old", "new"):
        key = f"get_state_{age}"
        out.append(Row(f"get_state {age} jobs, API CPU per request (ms)", small[key]["api_cpu_ms"],
                       large[key]["api_cpu_ms"], "", True))
    out.append(Row("emulator RSS (MiB, not a target)", small["kubeapi_rss_mib"], large["kubeapi_rss_mib"], "", True))
    return out


def table(result: list[Row], sizes: tuple[int, int]) -> str:
    head = f"| measure | {sizes[0]:,} jobs (baseline) | {sizes[1]:,} jobs | target | verdict |"
    lines = [head, "|---|---|---|---|---|"]
    for row in result:
        verdict = row.verdict if row.target else ""
        lines.append(f"| {row.what} | {row.baseline} | {row.ours} | {row.target} | {verdict} |")
    return "\n".join(lines)


def main(*, quick: bool = False, json_file: Path | None = None) -> int:
    sizes = QUICK_SIZES if quick else SIZES
    results = {}
    with tempfile.TemporaryDirectory(prefix="ingest-scale-") as temp:
        for count in sizes:
            print(f"scale: {count:,} retained jobs ...", flush=True)
            results[count] = measure(count, Path(temp) / f"stack-{count}")
            print(f"  {json.dumps(results[count])}", flush=True)
    result_rows = rows(results[sizes[0]], results[sizes[1]])
    print()
    print(table(result_rows, sizes))
    if json_file:
        json_file.write_text(json.dumps({"quick": quick, "results": results,
                                         "targets": [dataclasses.asdict(r) | {"verdict": r.verdict}
                                                     for r in result_rows]},
                                        indent=2))
    return 0 if all(row.met for row in result_rows) else 1
