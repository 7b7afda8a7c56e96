"""The web console with 10,000 jobs: time to first paint of the Jobs page, against 100 jobs.

`python -m benchmarks --only console`. The jobs are created straight in the Kubernetes API with ids
reserved from the service's own counter (`ingest.ids`), as if the API had handed them out, so the
console's list (which reads downwards from the counter) sees them. Measured in a headless Chromium
(tests/integration/browser.py): from navigation start to the moment the page has put the first
page of jobs in its table (the `jobs-painted` performance mark, set after the rows are in the DOM),
the median of several fresh loads; and the JSON page behind it (`GET /jobs?limit=50`), newest and
50 pages deep, median of 20 requests. The baseline is the same stack with 100 jobs, measured first
in the same run.
"""
from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx

from ingest import ids
from ingest.kube import api_client

if TYPE_CHECKING:
    from benchmarks.__main__ import Context

LOADS = 7
REQUESTS = 20


def reserve_job_ids(ctx: Context, count: int) -> int:
    client = api_client(config_file=str(ctx.stack.kubeconfig()))
    return ids.reserve(client, ctx.stack.namespace, ids.JOB_IDS, count)


def first_paint_ms(url: str) -> float:
    from tests.integration import browser  # selenium is a test dependency: imported only when measuring

    seconds = []
    driver = browser.start()
    try:
        for _ in range(LOADS):
            driver.get("about:blank")
            driver.get(f"{url}/ui/#/jobs")
            deadline = time.monotonic() + 60
            while True:
                mark = driver.execute_script(
                    "const m = performance.getEntriesByName('jobs-painted'); return m.length ? m[0].startTime : null;")
                if mark is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the Jobs page never painted its table")
                time.sleep(0.01)
            rows = driver.execute_script("return document.querySelectorAll('#jobs-table tbody tr').length")
            if rows == 0:
                raise RuntimeError("the Jobs page painted an empty table")
            seconds.append(mark)
    finally:
        driver.quit()
    return statistics.median(seconds)


def list_ms(api: httpx.Client, params: dict[str, Any]) -> float:
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = api.get("/jobs", params=params)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET /jobs: {response.status_code} {response.text[:200]}")
    return statistics.median(times)


def measure(ctx: Context, newest: int) -> dict[str, Any]:
    deep = {"limit": 50, "continue": str(max(1, newest - 50 * 50))}
    return {"first_paint_ms": round(first_paint_ms(ctx.stack.api_url), 1),
            "list_newest_ms": round(list_ms(ctx.api, {"limit": 50}), 1),
            "list_deep_ms": round(list_ms(ctx.api, deep), 1)}


def console(ctx: Context) -> dict[str, Any]:
    from benchmarks.__main__ import create_jobs, wait_idle

    baseline_jobs, jobs = 100, ctx.sizes.jobs
    first = reserve_job_ids(ctx, baseline_jobs)
    create_jobs(ctx.stack, baseline_jobs, first=first)
    wait_idle(ctx.stack)
    baseline = measure(ctx, first + baseline_jobs - 1)
    more = jobs - baseline_jobs
    first = reserve_job_ids(ctx, more)
    create_seconds = create_jobs(ctx.stack, more, first=first)
    wait_idle(ctx.stack)
    ours = measure(ctx, first + more - 1)
    return {"jobs": jobs, "baseline_jobs": baseline_jobs, "create_seconds": round(create_seconds, 1),
            **ours, **{f"baseline_{key}": value for key, value in baseline.items()}}
