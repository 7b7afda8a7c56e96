"""`python -m benchmarks.memory_budget`: one API replica under the requests that used to kill it.

At once: 8 uploads whose metadata.txt is at the limit (64 MiB), 8 large /move documents (tens of
thousands of Files entries each) and, all along, small unrelated uploads. Clients behave as they
should: a 503 is retried after its `Retry-After`. The benchmark starts its own local stack with
the default settings (so the budget is the default INGEST_API_MEMORY_BUDGET_BYTES) and prints:

- the API's peak RSS (VmHWM, reset at the start) against the chart's memory limit for the API
  (charts/ingest/values.yaml), target: at least 25 % to spare; its idle RSS in the same run is
  the baseline;
- how many of the large requests were accepted, how often each was told to come back, and that
  every one got through in the end;
- the small uploads that completed meanwhile and their POST latency.

    python -m benchmarks.memory_budget [--uploads 8] [--moves 8] [--move-mib 16] [--set NAME=VALUE]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.__main__ import proc_status
from ingest.config import Settings
from ingest.local.launcher import REPO, Stack, parse_ports
from tests.integration.bundles import TRANSACTION, bundle, files_entry

MiB = 1024 * 1024
SPARE_TARGET = 0.25


def chart_api_memory_limit() -> int:
    values = yaml.safe_load((REPO / "charts" / "ingest" / "values.yaml").read_text())
    text = str(values["api"]["resources"]["limits"]["memory"])
    units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def metadata_at_limit(limit: int) -> bytes:
    """A valid metadata.txt of exactly `limit` bytes: one file, the rest a TransactionKeyValue."""
    document = TRANSACTION + [files_entry("a.txt", "big-metadata", b"a"),
                              {"destinationTable": "TransactionKeyValue", "key": "padding", "value": ""}]
    text = json.dumps(document)
    document[-1]["value"] = "x" * (limit - len(text))
    raw = json.dumps(document).encode()
    assert len(raw) == limit, (len(raw), limit)
    return raw


def move_document(root: Path, size: int, seed: int) -> bytes:
    """A /move document of about `size` bytes: many Files entries, sources under the move root."""
    entries = list(TRANSACTION)
    used, index = 0, 0
    while used < size:
        name = f"f{seed:02}-{index:07}.dat"
        entry = files_entry(name, f"run{seed}/part{index // 1000}", b"x", source=str(root / f"run{seed}" / name))
        used += len(json.dumps(entry)) + 2
        entries.append(entry)
        index += 1
    return json.dumps(entries).encode()


class Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak = 0
        Path(f"/proc/{pid}/clear_refs").write_text("5")

    def run(self) -> None:
        while not self.stop.wait(0.05):
            status = proc_status(self.pid)
            self.peak = max(self.peak, status.get("VmHWM", 0), status.get("VmRSS", 0))


def post_until_accepted(url: str, path: str, body: bytes, content_type: str, deadline: float) -> dict[str, Any]:
    """POST, honouring 503 + Retry-After, until an answer that is not 503 (or the deadline)."""
    refused = dropped = 0
    with httpx.Client(base_url=url, timeout=httpx.Timeout(600, connect=10)) as client:
        while True:
            try:
                response = client.post(path, content=body, headers={"Content-Type": content_type})
            except httpx.TransportError:
                dropped += 1
                if time.monotonic() > deadline:
                    return {"status": 0, "refused": refused, "dropped": dropped}
                continue
            if response.status_code != 503 or time.monotonic() > deadline:
                return {"status": response.status_code, "refused": refused, "dropped": dropped}
            refused += 1
            time.sleep(float(response.headers.get("Retry-After", "5")))


def small_uploads(url: str, stop: threading.Event) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    job_ids: list[int] = []
    body, _ = bundle({"small/a.txt": b"an unrelated small upload"})
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            began = time.perf_counter()
            try:
                response = client.post("/upload", content=body)
            except httpx.TransportError as error:  # counted: a client would retry, a figure should show it
                key = f"connection error: {type(error).__name__}"
                statuses[key] = statuses.get(key, 0) + 1  # type: ignore[index]
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - began)
                job_ids.append(response.json()["job_id"])
            stop.wait(0.5)
        completed = 0
        for job_id in job_ids:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                state = client.get(f"/get_state/{job_id}").json()
                if state["complete"]:
                    completed += state["state"] == "OK"
                    break
                time.sleep(0.5)
    return {"statuses": statuses, "posted": len(job_ids), "completed_ok": completed,
            "post_median_s": round(statistics.median(latencies), 3) if latencies else None,
            "post_max_s": round(max(latencies), 3) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=8, help="uploads with metadata.txt at the limit")
    parser.add_argument("--moves", type=int, default=8, help="large /move documents")
    parser.add_argument("--move-mib", type=int, default=16, help="size of each /move document in MiB")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting for the stack")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    limit = chart_api_memory_limit()
    defaults = Settings.from_env(settings)

    with tempfile.TemporaryDirectory(prefix="ingest-budget-") as temp:
        root = Path(temp) / "move"
        root.mkdir()
        stack = Stack(Path(temp) / "stack", ports=parse_ports("auto"), env={"INGEST_MOVE_ROOTS": str(root)} | settings)
        try:
            print(f"starting the local stack in {temp} ...", flush=True)
            stack.up()
            print("building the requests ...", flush=True)
            upload_body, _ = bundle({"big-metadata/a.txt": b"a"},
                                    metadata=metadata_at_limit(defaults.max_metadata_bytes))
            documents = [move_document(root, args.move_mib * MiB, seed) for seed in range(args.moves)]
            api_pid = stack.pids["api"]
            time.sleep(2)
            idle = proc_status(api_pid).get("VmRSS", 0)
            peak = Peak(api_pid)
            peak.start()
            stop_small = threading.Event()
            began = time.monotonic()
            deadline = began + 1200
            with concurrent.futures.ThreadPoolExecutor(args.uploads + args.moves + 1) as pool:
                small = pool.submit(small_uploads, stack.api_url, stop_small)
                large = [pool.submit(post_until_accepted, stack.api_url, "/upload", upload_body,
                                     "application/octet-stream", deadline)
                         for _ in range(args.uploads)]
                large += [pool.submit(post_until_accepted, stack.api_url, "/move", document, "application/json",
                                      deadline)
                          for document in documents]
                outcomes = [future.result() for future in large]
                seconds = time.monotonic() - began
                stop_small.set()
                small_result = small.result()
            peak.stop.set()
            peak.join()
            log = (stack.directory / "logs" / "api.log").read_text(errors="replace").splitlines()
            problems = [line for line in log if "ERROR" in line or "Traceback" in line]
        finally:
            stack.down()

    uploads, moves = outcomes[:args.uploads], outcomes[args.uploads:]
    spare = 1 - peak.peak / limit
    print()
    print(f"API memory limit in the chart      {limit / MiB:.0f} MiB; budget INGEST_API_MEMORY_BUDGET_BYTES "
          f"{defaults.api_memory_budget_bytes / MiB:.0f} MiB")
    print(f"API RSS idle (baseline, same run)  {idle / MiB:.0f} MiB")
    print(
        f"API peak RSS under the load        {peak.peak / MiB:.0f} MiB = {100 * peak.peak / limit:.0f} % "
        f"of the limit, {100 * spare:.0f} % to spare (target >= {100 * SPARE_TARGET:.0f} %): "
        f"{'PASS' if spare >= SPARE_TARGET else 'MISS'}"
    )
    for label, results, size in (("uploads, metadata.txt at the limit", uploads, len(upload_body)),
                                 ("/move documents", moves, len(documents[0]) if documents else 0)):
        statuses = sorted(result["status"] for result in results)
        print(f"{len(results)} {label} ({size / MiB:.0f} MiB each): final statuses {statuses}, "
              f"503 + Retry-After {sum(result['refused'] for result in results)} times before acceptance")
    print(
        f"small uploads meanwhile            {small_result['posted']} accepted, "
        f"{small_result['completed_ok']} completed OK, statuses {small_result['statuses']}, "
        f"POST median {small_result['post_median_s']} s, max {small_result['post_max_s']} s"
    )
    print(f"large requests dropped by the connection before an answer (retried): {sum(r['dropped'] for r in outcomes)}")
    print(
        f"API log lines with ERROR or Traceback: {len(problems)}"
        + "".join(f"\n    {line[:300]}" for line in problems[:10])
    )
    print(f"wall time                          {seconds:.0f} s")
    ok = (spare >= SPARE_TARGET and all(result["status"] != 503 for result in outcomes)
          and all(isinstance(status, int) and (status < 500 or status == 503) for status in small_result["statuses"])
          and small_result["completed_ok"] == small_result["posted"] > 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
