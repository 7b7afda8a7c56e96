"""`python -m benchmarks`: the service against "untar it and copy the files to S3 myself".

Users choose between this service and a shell loop, so every figure is printed beside that
baseline, measured in the same run on the same object store: the benchmark starts its own local
stack (`ingest.local.launcher.Stack`, free ports, a temporary folder), writes its own bundles, and
removes both when it ends. Workloads:

- large: a 1 GiB bundle of 16 x 64 MiB files. Ours: POST start -> `complete` (polling get_state).
  Baseline: extract the tar to local disk, then upload the files with the minio SDK (default part
  size, 4 files in parallel), extraction included.
- small: 5,000 files of 4 KiB, the same two measurements (baseline: 8 upload threads).
- get_state: requests/s and p50/p99 at 32 connections with 10,000 IngestJobs present, from `wrk`
  (a separate process) over random existing job ids.
- tus: the large bundle through resumable uploads (`ingest upload`'s PATCHes of 256 MiB) vs one POST, to staged
  (benchmarks/tus.py); target: tus within 15 % of POST's throughput.
- latency: a 1-file bundle, POST -> complete, median and p90 of 20.
- console: the web console's Jobs page with 10,000 jobs, time to first paint in headless Chromium,
  against 100 jobs (benchmarks/console.py).
- burst: 200 bundles of one 30-byte file from 1 and from 10 clients, in pod mode (a worker Pod per
  job, the baseline) and in pool mode (warm workers): jobs/s, latency p50 and p95 (benchmarks/burst.py).
- memory: peak RSS of the API during the large upload, and of the worker Pod's process during the
  large and small ingests (read from /proc: VmHWM, reset before the workload where the kernel lets
  us, and polled).

Each target prints PASS or MISS. The figures are for a 2-core machine where the object store,
the stack and the client share the CPUs; the CPU seconds each process spent are printed too, so a
ratio can be explained rather than guessed at.

- scale (only when asked: it starts stacks of its own): 100,000 retained jobs against 1,000, see
  benchmarks/scale.py.

    python -m benchmarks [--only large,small,latency,tus,console,burst,get_state,scale] [--quick] [--json FILE]
                         [--set NAME=VALUE] [--profile DIR]   # py-spy the API and the workers (perturbs the figures)
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from minio import Minio
from minio.deleteobjects import DeleteObject

from benchmarks import burst
from benchmarks.console import console
from ingest.bundle.writer import FileData, bundle, coalesce
from ingest.local.launcher import Stack, parse_ports

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
MB = 1_000_000
WORKLOADS = ("large", "small", "latency", "tus", "console", "burst",
             "get_state")  # run order: get_state's 10,000 jobs go last
BASELINE_BUCKET = "bench-baseline"
ARCHIVE_BUCKET = "ingest-archive"
JOBS_PATH = "/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs"
FIRST_SYNTHETIC_JOB = 10_000_001  # far above the ids the API hands out during the run


@dataclasses.dataclass(frozen=True)
class Sizes:
    large_files: int = 16
    large_file_size: int = 64 * MiB
    small_files: int = 5000
    small_file_size: int = 4 * KiB
    jobs: int = 10_000
    load_seconds: int = 10
    latency_runs: int = 20
    burst_bundles: int = 200


QUICK = Sizes(large_files=4, large_file_size=16 * MiB, small_files=500, jobs=1000, load_seconds=3, latency_runs=5,
              burst_bundles=20)


# --- bundles ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bundle:
    path: Path
    files: int
    data_bytes: int

    @property
    def size(self) -> int:
        return self.path.stat().st_size


TRANSACTION = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
]
BUNDLE_MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z


def write_bundle(path: Path, *, files: int, size: int, seed: int) -> Bundle:
    """A Pacifica bundle (data/ members, metadata.txt last) of random, distinct files, as the uploader writes it."""
    rng = random.Random(seed)

    def data() -> Iterator[bytes]:  # one file in memory at a time, made when the writer reaches it
        yield rng.randbytes(size)

    members = [FileData(f"data/set-{number // 1000}/file-{number:06d}.bin", size, BUNDLE_MTIME, data())
               for number in range(files)]
    with open(path, "wb") as out:
        for chunk in coalesce(bundle(members, transaction=TRANSACTION), MiB):
            out.write(chunk)
    return Bundle(path, files, files * size)


# --- the service: POST -> complete --------------------------------------------------------------
def ingest(api: httpx.Client, bundle: Bundle, *, poll: float) -> tuple[float, int, float]:
    """Seconds from the first byte of the POST to `complete`, the job id, and seconds to the POST's answer."""
    started = time.perf_counter()
    with bundle.path.open("rb") as body:
        response = api.post("/upload", content=body, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(bundle.size)})
    if response.status_code != 200:
        raise RuntimeError(f"POST /upload answered {response.status_code}: {response.text[:300]}")
    job_id, staged = response.json()["job_id"], time.perf_counter() - started
    while True:
        state = api.get("/get_state", params={"job_id": job_id}).json()
        if state.get("complete"):
            break
        time.sleep(poll)
    seconds = time.perf_counter() - started
    if state["state"] != "OK":
        raise RuntimeError(f"job {job_id} failed at {state['task']}: {state['exception'][:500]}")
    return seconds, job_id, staged


# --- the baseline: untar, then copy the files with the minio SDK ---------------------------------
def baseline(s3: Minio, bundle: Bundle, scratch: Path, *, threads: int) -> float:
    """Seconds to extract `bundle` under `scratch` and upload every file, `threads` at a time."""
    target = scratch / "extracted"
    started = time.perf_counter()
    with tarfile.open(bundle.path) as tar:
        tar.extractall(target, filter="data")
    paths = [path for path in (target / "data").rglob("*") if path.is_file()]

    def put(path: Path) -> None:
        s3.fput_object(BASELINE_BUCKET, path.relative_to(target).as_posix(), str(path))

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, paths))
    seconds = time.perf_counter() - started
    shutil.rmtree(target)
    if len(paths) != bundle.files:
        raise RuntimeError(f"the baseline extracted {len(paths)} files, expected {bundle.files}")
    return seconds


def remove_prefix(s3: Minio, bucket: str, prefix: str) -> None:
    keys = [DeleteObject(item.object_name) for item in s3.list_objects(bucket, prefix=prefix, recursive=True)]
    for start in range(0, len(keys), 1000):
        for error in s3.remove_objects(bucket, keys[start:start + 1000]):
            print(f"  could not delete {error.name}: {error.message}", file=sys.stderr)


# --- /proc: peak memory and CPU seconds of the stack's processes --------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes; empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: int(value.split()[0]) * KiB for key, value in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", text, re.M)}


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def worker_pids(podrunner: int) -> list[int]:
    """Worker Pods of this stack: `python -m ingest.worker` children of its pod runner.

    Other stacks (a colleague's test run) may run workers on the same machine at the same time.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"ingest.worker" in argv and f"PPid:\t{podrunner}\n" in (entry / "status").read_text():
                    found.append(int(entry.name))
    return found


class Watcher(threading.Thread):
    """Polls /proc while a workload runs: peak RSS of the API and of every worker, CPU by process.

    The kernel's VmHWM is the peak since the process started; writing 5 to clear_refs resets it,
    so the API's peak belongs to this workload. Workers start inside the workload, so theirs does.
    """

    def __init__(self, stack: Stack, *, on_worker: Callable[[int], None] | None = None, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="watcher")
        self.fixed = dict(stack.pids)
        if not stack.external:
            self.fixed |= {f"s3 {name}": pid for name, pid in stack.object_store().pids().items()}
        self.interval = interval
        self.on_worker = on_worker
        self.stop_event = threading.Event()
        self.peak: dict[str, int] = {"api": 0, "worker": 0}
        self.cpu_start = {name: cpu_seconds(pid) or 0.0 for name, pid in self.fixed.items()}
        self.cpu_end: dict[str, float] = {}
        self.worker_cpu: dict[int, float] = {}
        self.self_cpu = time.process_time()
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.fixed['api']}/clear_refs").write_text("5")

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)
        self.sample()

    def sample(self) -> None:
        status = proc_status(self.fixed["api"])
        self.peak["api"] = max(self.peak["api"], status.get("VmHWM", 0), status.get("VmRSS", 0))
        for pid in worker_pids(self.fixed["podrunner"]):
            if pid not in self.worker_cpu and self.on_worker:
                self.on_worker(pid)
            status = proc_status(pid)
            self.peak["worker"] = max(self.peak["worker"], status.get("VmHWM", 0), status.get("VmRSS", 0))
            self.worker_cpu[pid] = cpu_seconds(pid) or self.worker_cpu.get(pid, 0.0)

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join()
        cpu = {name: round((cpu_seconds(pid) or 0.0) - self.cpu_start[name], 2) for name, pid in self.fixed.items()}
        cpu["worker"] = round(sum(self.worker_cpu.values()), 2)
        cpu["benchmark client"] = round(time.process_time() - self.self_cpu, 2)
        return {"peak_rss_bytes": dict(self.peak), "cpu_seconds": cpu}


class Profiler:
    """py-spy on the API for the workload and on each worker as it appears (raw collapsed stacks)."""

    def __init__(self, directory: Path | None, workload: str, api_pid: int) -> None:
        self.directory = directory
        self.workload = workload
        self.processes: list[subprocess.Popen] = []
        if directory is not None:
            self.binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            self._record(api_pid, f"api-{workload}")

    def _record(self, pid: int, name: str) -> None:
        assert self.directory is not None
        self.processes.append(subprocess.Popen(
            [self.binary, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--threads",
             "--output", str(self.directory / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def worker(self, pid: int) -> None:
        if self.directory is not None:
            self._record(pid, f"worker-{self.workload}-{pid}")

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def watched(stack: Stack, workload: str, profile: Path | None) -> Iterator[dict[str, Any]]:
    profiler = Profiler(profile, workload, stack.pids["api"])
    watcher = Watcher(stack, on_worker=profiler.worker)
    watcher.start()
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        result.update(watcher.finish())
        profiler.stop()


# --- workloads ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    stack: Stack
    api: httpx.Client
    s3: Minio
    store_gc: Callable[[], None]
    scratch: Path
    sizes: Sizes
    profile: Path | None


def transfer_workload(ctx: Context, name: str, *, files: int, size: int, threads: int) -> dict[str, Any]:
    free = shutil.disk_usage(ctx.scratch).free
    if free < 5 * files * size + 2 * GiB:
        raise RuntimeError(
            f"only {free / GiB:.1f} GiB free under {ctx.scratch}; {name} needs ~{5 * files * size / GiB:.1f} GiB"
        )
    bundle = write_bundle(ctx.scratch / f"{name}.tar", files=files, size=size, seed=len(name))
    bundle_bytes = bundle.size
    try:
        with watched(ctx.stack, f"{name}-baseline", None) as base_observed:
            base_seconds = baseline(ctx.s3, bundle, ctx.scratch, threads=threads)
        remove_prefix(ctx.s3, BASELINE_BUCKET, "")
        ctx.store_gc()
        with watched(ctx.stack, name, ctx.profile) as observed:
            ours_seconds, job_id, post_seconds = ingest(ctx.api, bundle, poll=0.1)
        remove_prefix(ctx.s3, ARCHIVE_BUCKET, f"{job_id}/")
        ctx.store_gc()
    finally:
        bundle.path.unlink()
    return {
        "files": files, "file_bytes": size, "bundle_bytes": bundle_bytes, "baseline_threads": threads,
        "ours_seconds": round(ours_seconds, 2), "ours_post_seconds": round(post_seconds, 2),
        "baseline_seconds": round(base_seconds, 2),
        "ours_mb_s": round(bundle.data_bytes / MB / ours_seconds, 1),
        "baseline_mb_s": round(bundle.data_bytes / MB / base_seconds, 1),
        "ours_files_s": round(files / ours_seconds, 1), "baseline_files_s": round(files / base_seconds, 1),
        "ratio": round(base_seconds / ours_seconds, 2), **observed,
        "baseline_cpu_seconds": base_observed["cpu_seconds"],
    }


def large(ctx: Context) -> dict[str, Any]:
    return transfer_workload(ctx, "large", files=ctx.sizes.large_files, size=ctx.sizes.large_file_size, threads=4)


def small(ctx: Context) -> dict[str, Any]:
    return transfer_workload(ctx, "small", files=ctx.sizes.small_files, size=ctx.sizes.small_file_size, threads=8)


def latency(ctx: Context) -> dict[str, Any]:
    bundle = write_bundle(ctx.scratch / "one.tar", files=1, size=4 * KiB, seed=1)
    try:
        ingest(ctx.api, bundle, poll=0.02)  # warm-up: first worker start, first bucket writes
        runs = [ingest(ctx.api, bundle, poll=0.02) for _ in range(ctx.sizes.latency_runs)]
    finally:
        bundle.path.unlink()
    for _, job_id, _ in runs:
        remove_prefix(ctx.s3, ARCHIVE_BUCKET, f"{job_id}/")
    seconds = sorted(run[0] for run in runs)
    return {"runs": len(seconds), "median_seconds": round(statistics.median(seconds), 2),
            "p90_seconds": round(seconds[max(0, int(0.9 * len(seconds)) - 1)], 2),
            "min_seconds": round(seconds[0], 2), "max_seconds": round(seconds[-1], 2)}


def create_jobs(stack: Stack, count: int, *, first: int = FIRST_SYNTHETIC_JOB) -> float:
    """`count` finished IngestJobs from id `first` straight into the Kubernetes API (admin), status via /status."""
    config = yaml.safe_load(stack.kubeconfig().read_text())
    token = config["users"][0]["user"]["token"]
    host, port = config["clusters"][0]["cluster"]["server"].removeprefix("http://").split(":")
    path = JOBS_PATH.format(namespace=stack.namespace)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"state": "OK", "task": "ingest metadata", "taskPercent": 100.0, "complete": True, "exception": "",
              "created": stamp, "updated": stamp, "phase": "Succeeded", "finishedAt": stamp}

    def call(conn: http.client.HTTPConnection, method: str, url: str, body: Any, content_type: str) -> None:
        conn.request(method, url, body=json.dumps(body),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {data[:200]!r}")

    def create(job_ids: range) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        for job_id in job_ids:
            name = f"ingest-{job_id}"
            call(conn, "POST", path, {
                "apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob",
                "metadata": {"name": name, "labels": {"ingest.pacifica.org/job-id": str(job_id)}},
                "spec": {"jobId": job_id, "operation": "upload"}}, "application/json")
            call(conn, "PATCH", f"{path}/{name}/status", {"status": status}, "application/merge-patch+json")
        conn.close()

    started = time.perf_counter()
    slices = [range(first + n, first + count, 4) for n in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, slices))
    return time.perf_counter() - started


def wait_idle(stack: Stack, *, quiet: float = 0.1, timeout: float = 300) -> None:
    """Until the stack's processes (cache watches, operator) have digested what just happened."""
    pids = list(stack.pids.values())
    deadline = time.monotonic() + timeout
    last = sum(cpu_seconds(pid) or 0.0 for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(cpu_seconds(pid) or 0.0 for pid in pids)
        if now - last < quiet:
            return
        last = now


WRK_SCRIPT = """
local low, high = {low}, {high}
local seeded = false
request = function()
  if not seeded then math.randomseed(os.time() + math.floor(os.clock() * 1e6)); seeded = true end
  return wrk.format("GET", "/get_state?job_id=" .. math.random(low, high))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("  installing wrk (apt-get install wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed: apt-get install wrk")
    return found


def run_wrk(binary: str, url: str, script: Path, seconds: int) -> dict[str, Any]:
    result = subprocess.run([binary, "-t2", "-c32", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
                            capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+)$", result.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no result: {result.stdout[-500:]} {result.stderr[-500:]}")
    requests, duration_us, p50_us, p99_us, errors = map(int, match.groups())
    return {"requests": requests, "requests_per_second": round(requests / (duration_us / 1e6)),
            "p50_ms": round(p50_us / 1000, 2), "p99_ms": round(p99_us / 1000, 2), "errors": errors}


def get_state(ctx: Context) -> dict[str, Any]:
    binary = wrk_binary()
    count = ctx.sizes.jobs
    create_seconds = create_jobs(ctx.stack, count)
    wait_idle(ctx.stack)
    last = ctx.api.get("/get_state", params={"job_id": FIRST_SYNTHETIC_JOB + count - 1})
    if last.status_code != 200 or not last.json()["complete"]:
        raise RuntimeError(f"the API does not see the created jobs: {last.status_code} {last.text[:200]}")
    script = ctx.scratch / "get_state.lua"
    script.write_text(WRK_SCRIPT.format(low=FIRST_SYNTHETIC_JOB, high=FIRST_SYNTHETIC_JOB + count - 1))
    run_wrk(binary, ctx.stack.api_url, script, 2)  # warm-up
    with watched(ctx.stack, "get_state", None) as observed:
        measured = run_wrk(binary, ctx.stack.api_url, script, ctx.sizes.load_seconds)
    return {"jobs": count, "connections": 32, "seconds": ctx.sizes.load_seconds,
            "create_jobs_per_second": round(2 * count / create_seconds), **measured,
            "cpu_seconds": observed["cpu_seconds"]}


def tus(ctx: Context) -> dict[str, Any]:
    from benchmarks import tus as workload

    bundle = write_bundle(ctx.scratch / "tus.tar", files=ctx.sizes.large_files, size=ctx.sizes.large_file_size, seed=7)

    def wait(job_id: int) -> None:
        while not ctx.api.get("/get_state", params={"job_id": job_id}).json().get("complete"):
            time.sleep(0.2)

    try:
        result = workload.compare(api_url=ctx.stack.api_url, bundle_path=bundle.path, wait=wait,
                                  post=lambda: ingest(ctx.api, bundle, poll=0.2),
                                  watch=lambda name: watched(ctx.stack, name, None))
    finally:
        bundle.path.unlink()
    for job_id in result["jobs"]:
        remove_prefix(ctx.s3, ARCHIVE_BUCKET, f"{job_id}/")
    ctx.store_gc()
    return result


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "large": large, "small": small, "latency": latency, "tus": tus, "console": console, "get_state": get_state,
    "burst": lambda ctx: burst.burst(ctx.stack, bundles=ctx.sizes.burst_bundles)}


# --- targets and the table ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("PASS" if self.met else "MISS")


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if "large" in results:
        r = results["large"]
        label = f"large ({r['files']} x {r['file_bytes'] // MiB} MiB)"
        out.append(Row(label,
                       f"{r['ours_seconds']:.1f} s (POST {r['ours_post_seconds']:.1f} s), {r['ours_mb_s']:.0f} MB/s",
                       f"{r['baseline_seconds']:.1f} s, {r['baseline_mb_s']:.0f} MB/s", f"{r['ratio']:.2f}",
                       ">= 0.45 x baseline", r["ratio"] >= 0.45))
        api = r["peak_rss_bytes"]["api"] / MB
        out.append(Row("memory: API, large", f"{api:.0f} MB peak RSS", "", "", "< 150 MB", api < 150))
    for name in ("large", "small"):
        if name in results:
            peak = results[name]["peak_rss_bytes"]["worker"] / MB
            out.append(Row(f"memory: worker, {name}", f"{peak:.0f} MB peak RSS", "", "", "< 250 MB", 0 < peak < 250))
    if "small" in results:
        r = results["small"]
        label = f"small ({r['files']} x {r['file_bytes'] // KiB} KiB)"
        out.append(Row(label, f"{r['ours_seconds']:.1f} s, {r['ours_files_s']:.0f} files/s",
                       f"{r['baseline_seconds']:.1f} s, {r['baseline_files_s']:.0f} files/s", f"{r['ratio']:.2f}",
                       ">= 0.8 x baseline", r["ratio"] >= 0.8))
    if "get_state" in results:
        r = results["get_state"]
        out.append(Row(f"get_state ({r['jobs']} jobs, 32 conn)",
                       f"{r['requests_per_second']} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms", "", "",
                       ">= 1500 req/s, p99 < 25 ms",
                       r["requests_per_second"] >= 1500 and r["p99_ms"] < 25 and r["errors"] == 0))
    if "burst" in results:
        out.extend(Row(workload, ours, "", "", target, met) for workload, ours, target,
                   met in burst.targets(results["burst"]))
    if "tus" in results:
        r = results["tus"]
        out.append(Row(f"tus ({r['bundle_bytes'] / GiB:.1f} GiB, {r['chunk_bytes'] // MiB} MiB PATCHes, to staged)",
                       f"tus {r['tus_seconds']:.1f} s, {r['tus_mb_s']:.0f} MB/s",
                       f"POST {r['post_seconds']:.1f} s, {r['post_mb_s']:.0f} MB/s", f"{r['ratio']:.2f}",
                       ">= 0.85 x POST", r["ratio"] >= 0.85))
        out.append(Row(f"tus, {r['small_chunk_bytes'] // MiB} MiB PATCHes",
                       f"tus {r['small_chunk_seconds']:.1f} s, {r['small_chunk_mb_s']:.0f} MB/s",
                       f"POST {r['post_seconds']:.1f} s", f"{r['small_chunk_ratio']:.2f}", "(for the record)", None))
    if "console" in results:
        r = results["console"]
        out.append(
            Row(
                f"console: Jobs page first paint ({r['jobs']} jobs)",
                f"{r['first_paint_ms']:.0f} ms (GET /jobs {r['list_newest_ms']:.0f} ms, "
                f"50 pages deep {r['list_deep_ms']:.0f} ms)",
                f"{r['baseline_first_paint_ms']:.0f} ms with {r['baseline_jobs']} jobs "
                f"(GET /jobs {r['baseline_list_newest_ms']:.0f} ms)",
                f"{r['first_paint_ms'] / r['baseline_first_paint_ms']:.2f}",
                "< 1000 ms",
                r["first_paint_ms"] < 1000,
            )
        )
    if "latency" in results:
        r = results["latency"]
        out.append(Row(f"latency (1 file, {r['runs']} runs)",
                       f"median {r['median_seconds']:.2f} s, p90 {r['p90_seconds']:.2f} s",
                       "", "", "median <= 3 s", r["median_seconds"] <= 3))
    return out


def table(table_rows: list[Row]) -> str:
    header = ("workload", "ours", "baseline (untar + minio SDK)", "ratio", "target", "")
    cells = [header] + [(r.workload, r.ours, r.baseline, r.ratio, r.target, r.verdict) for r in table_rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def cpu_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in results.items():
        for label, key in ((name, "cpu_seconds"), (f"{name} baseline", "baseline_cpu_seconds")):
            cpu = result.get(key)
            if cpu:
                busy = sorted(((seconds, who) for who, seconds in cpu.items() if seconds >= 0.05), reverse=True)
                lines.append(f"  {label}: " + ", ".join(f"{who} {seconds:.1f}" for seconds, who in busy))
        lines.append(f"    (1-minute load average before {name}: {result['load_average_before']})")
    return lines


# --- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the stack's API, operator and workers, e.g. INGEST_PART_SIZE=8388608")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the API and the workers into this folder (perturbs figures)")
    parser.add_argument("--large-files", type=int,
                        help="64 MiB files in the large bundle (default 16: 1 GiB; 32: 2 GiB)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(WORKLOADS) - {"scale"}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; known: {', '.join(WORKLOADS)}, scale")
    if "scale" in chosen:  # its own stacks, one per size: run apart from the shared one
        from benchmarks import scale

        code = scale.main(quick=args.quick, json_file=args.json)
        chosen.remove("scale")
        if not chosen:
            return code
    sizes = QUICK if args.quick else Sizes()
    if args.large_files:
        sizes = dataclasses.replace(sizes, large_files=args.large_files)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()

    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as temp:
        settings = dict(item.split("=", 1) for item in args.set)
        stack = Stack(Path(temp) / "stack", ports=parse_ports("auto"), env=settings)
        scratch = Path(temp) / "scratch"
        scratch.mkdir()
        try:
            print(f"starting the local stack in {temp} ...", flush=True)
            started = stack.up()
            print(f"  up in {started.get('startup_seconds')} s", flush=True)
            config = stack.s3()
            s3 = Minio(config["endpoint"], access_key=config["access_key"], secret_key=config["secret_key"],
                       secure=config["secure"], region="us-east-1")
            if not s3.bucket_exists(BASELINE_BUCKET):
                s3.make_bucket(BASELINE_BUCKET)
            store_gc = (lambda: None) if stack.external else stack.object_store().collect_garbage
            with httpx.Client(base_url=stack.api_url, timeout=httpx.Timeout(600, connect=10)) as api:
                ctx = Context(stack, api, s3, store_gc, scratch, sizes, args.profile)
                for name in (name for name in WORKLOADS if name in chosen):
                    print(f"{name} ...", flush=True)
                    began, load = time.perf_counter(), os.getloadavg()[0]
                    try:
                        results[name] = RUNNERS[name](ctx) | {"load_average_before": round(load, 2)}
                    except Exception as error:  # report the others; this one is a MISS
                        failures[name] = f"{type(error).__name__}: {error}"
                        print(f"  {name} failed: {failures[name]}", file=sys.stderr, flush=True)
                    print(f"  done in {time.perf_counter() - began:.0f} s", flush=True)
            with contextlib.suppress(Exception):
                remove_prefix(s3, BASELINE_BUCKET, "")
                s3.remove_bucket(BASELINE_BUCKET)
                store_gc()
        finally:
            stack.down()

    table_rows = rows(results)
    print()
    print(table(table_rows))
    print("CPU seconds by process during our run of each workload (2 cores):")
    print("\n".join(cpu_lines(results)))
    for name, message in failures.items():
        print(f"{name}: MISS (did not run to the end: {message})")
    if args.profile:
        print(f"py-spy profiles (raw collapsed stacks) in {args.profile}")
    if args.json:
        document = {"quick": args.quick, "settings": dict(item.split("=", 1) for item in args.set),
                    "cpus": os.cpu_count(), "sizes": dataclasses.asdict(sizes),
                    "results": results, "failures": failures,
                    "targets": [dataclasses.asdict(row) | {"verdict": row.verdict} for row in table_rows]}
        args.json.write_text(json.dumps(document, indent=2))
    return 0 if not failures and all(row.met is not False for row in table_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
