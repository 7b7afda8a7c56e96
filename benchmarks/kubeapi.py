"""Throughput of the local Kubernetes API emulator at the start and after 10,000 requests.

Starts ``python -m ingest.local.kubeapi`` on a free port, keeps one watch on IngestJobs open
(as the operator would), and measures over one keep-alive HTTP connection:

- create+get pairs per second (ConfigMaps, then IngestJobs),
- status patches per second (merge patches to ``ingestjobs/<name>/status``),

first on a fresh server (the baseline, measured in the same run), then again after 10,000 status
patches. Per-request cost and memory must stay flat: the run fails (exit 1) if the end
throughput is below half the start throughput. RSS is read from /proc.

    python benchmarks/kubeapi.py [--patches 10000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
JOBS = "/apis/ingest.pacifica.org/v1/namespaces/default/ingestjobs"
HEADERS = {"Authorization": "Bearer benchmark", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: object = None, content_type: str = "application/json") -> dict:
        headers = {**HEADERS, "Content-Type": content_type}
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data)


def job(name: str, job_id: int) -> dict:
    return {"apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob", "metadata": {"name": name},
            "spec": {"jobId": job_id, "operation": "upload"}}


def measure(client: Client, tag: str, count: int) -> tuple[float, float]:
    started = time.perf_counter()
    for n in range(count):
        name = f"{tag}-{n}"
        client.call("POST", JOBS, job(name, n + 1))
        client.call("GET", f"{JOBS}/{name}")
    pairs = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(count * 2):
        client.call("PATCH", f"{JOBS}/{tag}-{n % count}/status",
                    {"status": {"task": "ingest files", "taskPercent": n % 100, "filesDone": n}},
                    "application/merge-patch+json")
    patches = count * 2 / (time.perf_counter() - started)
    return pairs, patches


def watch(port: int, stop: threading.Event, counter: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", f"{JOBS}?watch=1&allowWatchBookmarks=true", headers=HEADERS)
    response = conn.getresponse()
    while not stop.is_set():
        if not response.readline():
            break
        counter[0] += 1
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches", type=int, default=10000)
    parser.add_argument("--sample", type=int, default=300, help="pairs per measurement")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ingest.local.kubeapi", "--port", str(port),
                               "--crds", str(ROOT / "crds")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        stop, seen = threading.Event(), [0]
        watcher = threading.Thread(target=watch, args=(port, stop, seen), daemon=True)
        watcher.start()
        client = Client(port)
        rss_start = rss_mib(server.pid)
        pairs0, patches0 = measure(client, "start", args.sample)
        print(f"start: {pairs0:8.0f} create+get pairs/s  {patches0:8.0f} status patches/s  "
              f"RSS {rss_mib(server.pid):6.1f} MiB (idle {rss_start:.1f})")
        started = time.perf_counter()
        for n in range(args.patches):
            client.call("PATCH", f"{JOBS}/start-{n % 20}/status",
                        {"status": {"state": "OK", "task": "ingest files",
                                    "taskPercent": (n % 1000) / 10, "bytesDone": n}},
                        "application/merge-patch+json")
            if (n + 1) % 2500 == 0:
                print(f"  {n + 1:6d} patches: {(n + 1) / (time.perf_counter() - started):8.0f}/s  "
                      f"RSS {rss_mib(server.pid):6.1f} MiB")
        pairs1, patches1 = measure(client, "end", args.sample)
        rss_end = rss_mib(server.pid)
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats").read())
        print(f"end:   {pairs1:8.0f} create+get pairs/s  {patches1:8.0f} status patches/s  "
              f"RSS {rss_end:6.1f} MiB")
        print(f"ratio end/start: pairs {pairs1 / pairs0:.2f}, patches {patches1 / patches0:.2f}; "
              f"watch events received {seen[0]}; server history {stats['history']} events, "
              f"resourceVersion {stats['resourceVersion']}")
        stop.set()
        flat = pairs1 >= pairs0 / 2 and patches1 >= patches0 / 2
        print("FLAT" if flat else "NOT FLAT: per-request cost grew more than 2x")
        return 0 if flat else 1
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
