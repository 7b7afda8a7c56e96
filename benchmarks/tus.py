"""The `tus` workload: a bundle through resumable uploads (`ingest upload`'s client) vs one POST /upload.

Both send the same bundle to the same stack in the same run; the figure is the time from the first
byte to the answer that says the bundle is staged (POST's 200, the final PATCH's 204), and the
target is tus (with the client's default PATCH size) within 15 % of POST's throughput. A run with
64 MiB PATCHes is printed beside it, to show what each PATCH's fixed work costs. Each job then
runs to `complete`, so the staged
bundles are ingested and removed like any other.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.cli.bundling import read_file
from ingest.cli.progress import Progress
from ingest.cli.resumable import TUS_CHUNK, TusUpload
from ingest.cli.service import Service

MB = 1_000_000


def tus_upload(api_url: str, path: Path, *, chunk_size: int) -> tuple[float, int]:
    """Seconds from the creation POST to the final PATCH's answer, and the job id."""
    size = path.stat().st_size
    upload = TusUpload(Service(api_url), chunk_size=chunk_size)
    started = time.perf_counter()
    upload.create(size, path.name)
    upload.send(lambda offset: read_file(path, offset), size, Progress(size, verb="sent", stream=None))
    return time.perf_counter() - started, upload.job_id


SMALL_CHUNK = 64 * 1024 * 1024  # for the record: what many small PATCHes cost


def compare(*, api_url: str, bundle_path: Path, post: Callable[[], tuple[float, int, float]],
            wait: Callable[[int], None], watch: Callable[[str], Any]) -> dict[str, Any]:
    """POST, then tus with the client's default chunk, then with small chunks; each job runs to the end
    before the next upload starts. `watch(name)` records the CPU seconds of the stack's processes."""
    size = bundle_path.stat().st_size
    with watch("tus-post") as post_observed:
        _, post_job, post_seconds = post()
    runs = []
    for chunk_size in (TUS_CHUNK, SMALL_CHUNK):
        with watch("tus") as observed:
            seconds, job_id = tus_upload(api_url, bundle_path, chunk_size=chunk_size)
        wait(job_id)
        runs.append((chunk_size, seconds, job_id, observed))
    post_mb_s = size / MB / post_seconds
    (_, tus_seconds, _, tus_observed), (_, small_seconds, _, _) = runs
    return {"bundle_bytes": size, "chunk_bytes": TUS_CHUNK, "small_chunk_bytes": SMALL_CHUNK,
            "post_seconds": round(post_seconds, 2), "post_mb_s": round(post_mb_s, 1),
            "tus_seconds": round(tus_seconds, 2), "tus_mb_s": round(size / MB / tus_seconds, 1),
            "small_chunk_seconds": round(small_seconds, 2), "small_chunk_mb_s": round(size / MB / small_seconds, 1),
            "ratio": round(post_seconds / tus_seconds, 2), "small_chunk_ratio": round(post_seconds / small_seconds, 2),
            "jobs": [post_job] + [job_id for _, _, job_id, _ in runs],
            "cpu_seconds": tus_observed["cpu_seconds"], "baseline_cpu_seconds": post_observed["cpu_seconds"]}
