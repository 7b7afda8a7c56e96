"""Observability on the local stack: the metrics move as jobs go, logs name their job, secrets stay out.

Counters are compared before and after, as deltas with `>=`: other tests' jobs may still finish on
the same stack meanwhile. The operator derives job metrics from its watch, a moment after a job
completes, so its scrape is polled until the job's final state is counted.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingest import logs
from ingest.local.launcher import REPO, Stack, http_ok, stop_pid
from ingest.local.objectstore import free_port
from tests.integration.bundles import OWN_POD, TRANSACTION, bundle, files_entry
from tests.integration.helpers import upload, wait_complete

pytestmark = pytest.mark.stack
DASHBOARD = REPO / "charts" / "ingest" / "dashboards" / "ingest.json"
TOKEN = "obs-T0ken-that-must-never-be-logged"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and every metric name the scrape declares or carries."""
    text = httpx.get(url, timeout=10).text
    samples: Samples = {}
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
            names.add(sample.name)
    return samples, names


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the series that carry `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {timeout} s: {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def operator_metrics(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.ports['metrics']}/metrics"


@pytest.fixture(scope="module")
def three_jobs(stack: Stack, api: httpx.Client, operator_metrics: str) -> dict[str, Any]:
    """A successful upload, one that fails in the worker (wrong digest), one the API refuses (not a tar)."""
    api_before, _ = scrape(f"{stack.api_url}/metrics")
    operator_before, _ = scrape(operator_metrics)
    good_files = {"obs/a.txt": b"a" * 1000, "obs/b.txt": b"b" * 3000}
    good, _ = bundle(good_files, extra_members=OWN_POD)  # a worker Pod of its own: its log is read below
    wrong = [*TRANSACTION, files_entry("c.txt", "obs", b"c" * 500, hashsum="0" * 40)]
    bad, _ = bundle({"obs/c.txt": b"c" * 500}, metadata=wrong, extra_members=OWN_POD)
    garbage = b"this is not a tar file " * 100
    ids = {"good": upload(api, good)["job_id"], "bad": upload(api, bad)["job_id"],
           "garbage": upload(api, garbage)["job_id"]}
    states = {kind: wait_complete(api, job_id) for kind, job_id in ids.items()}
    assert (
        states["good"]["state"] == "OK"
        and states["bad"]["state"] == "FAILED"
        and states["garbage"]["state"] == "FAILED"
    )
    assert states["bad"]["task"] == "ingest files", states["bad"]
    return {"ids": ids, "states": states, "sizes": {"good": len(good), "bad": len(bad), "garbage": len(garbage)},
            "good_bytes": sum(map(len, good_files.values())), "api_before": api_before,
            "operator_before": operator_before}


def test_api_metrics_move_with_uploads(stack: Stack, three_jobs: dict[str, Any]) -> None:
    before = three_jobs["api_before"]
    after, _ = scrape(f"{stack.api_url}/metrics")
    sizes = three_jobs["sizes"]

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("ingest_jobs_submitted_total", operation="upload") >= 3
    assert moved("ingest_upload_size_bytes_count", outcome="staged") >= 2
    assert moved("ingest_upload_size_bytes_sum", outcome="staged") >= sizes["good"] + sizes["bad"]
    assert moved("ingest_upload_size_bytes_count", outcome="refused") >= 1
    assert moved("ingest_upload_size_bytes_sum", outcome="refused") >= sizes["garbage"]
    assert moved("ingest_upload_duration_seconds_count", outcome="staged") >= 2
    assert moved("ingest_upload_duration_seconds_bucket", outcome="staged", le="+Inf") >= 2
    assert moved("ingest_get_state_duration_seconds_count") >= 3  # wait_complete polled each job
    assert moved("ingest_http_requests_total", handler="/upload", method="POST", code="200") >= 3
    assert moved("ingest_http_request_duration_seconds_count", handler="/get_state", method="GET") >= 3
    assert moved("ingest_kubernetes_requests_total") > 0
    assert moved("ingest_object_store_requests_total", method="PUT") > 0
    assert total(after, "ingest_state_cache_synced") == 1


def test_a_job_id_never_becomes_a_label(stack: Stack, api: httpx.Client, three_jobs: dict[str, Any]) -> None:
    job_id = three_jobs["ids"]["good"]
    assert api.get(f"/get_state/{job_id}").status_code == 200
    assert api.get("/no/such/path/12345").status_code == 404
    text = httpx.get(f"{stack.api_url}/metrics").text
    assert f"/get_state/{job_id}" not in text and "/no/such/path" not in text
    assert 'handler="/get_state/{job_id}"' in text and 'handler="other"' in text


def test_operator_metrics_move_with_final_states(three_jobs: dict[str, Any], operator_metrics: str) -> None:
    before = three_jobs["operator_before"]
    garbage_task = three_jobs["states"]["garbage"]["task"]

    def moved(name: str, **labels: str) -> float:
        return total(scrape(operator_metrics)[0], name, **labels) - total(before, name, **labels)

    wait_until(lambda: moved("ingest_jobs_total", operation="upload", state="OK", task="ingest metadata") >= 1
               and moved("ingest_jobs_total", operation="upload", state="FAILED", task="ingest files") >= 1
               and moved("ingest_jobs_total", operation="upload", state="FAILED", task=garbage_task) >= 1,
               "the three final states counted by the operator")
    assert moved("ingest_job_duration_seconds_count", operation="upload", state="OK") >= 1
    assert moved("ingest_job_duration_seconds_count", operation="upload", state="FAILED") >= 2
    assert moved("ingest_bytes_total", operation="upload") >= three_jobs["good_bytes"]
    assert moved("ingest_files_total", operation="upload") >= 2
    assert moved("ingest_job_step_duration_seconds_count") >= 1
    assert moved("ingest_worker_pods_started_total") >= 2
    assert moved("ingest_kubernetes_requests_total") > 0
    samples, names = scrape(operator_metrics)
    assert total(samples, "ingest_object_store_requests_total", method="HEAD") > 0  # buckets checked at start-up
    assert "ingest_jobs_in_flight" in names and "ingest_stuck_jobs_total" in names
    assert total(samples, "ingest_stuck_jobs_total", reason="upload_stalled") >= 0


def test_every_metric_the_dashboard_queries_exists(stack: Stack, operator_metrics: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                expressions.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    queried = {name for expr in expressions for name in re.findall(r"\b(ingest_[a-z0-9_]+)", expr)}
    assert len(queried) >= 15, queried
    exported = scrape(f"{stack.api_url}/metrics")[1] | scrape(operator_metrics)[1]
    assert queried <= exported, f"the dashboard queries metrics nobody exports: {sorted(queried - exported)}"


def log_lines(path: Path) -> list[str]:
    """Lines that start a log record (tracebacks continue a record on the following lines)."""
    return [line for line in path.read_text(errors="replace").splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]


def test_every_line_about_a_job_carries_its_job_id(stack: Stack, three_jobs: dict[str, Any],
                                                   operator_metrics: str) -> None:
    job_id = three_jobs["ids"]["good"]
    tag = f"job_id={job_id}"
    about = re.compile(rf"\b(job {job_id}|ingest-{job_id})\b")
    worker = stack.directory / "pods" / "logs" / f"ingest-{job_id}-worker-1.log"
    files = {"api": stack.directory / "logs" / "api.log", "operator": stack.directory / "logs" / "operator.log",
             "worker": worker}
    for component, path in files.items():
        lines = log_lines(path)
        tagged = [line for line in lines if line.endswith(tag)]
        assert tagged, f"no {component} line carries {tag}"
        untagged = [line for line in lines if about.search(line) and not line.endswith(tag)]
        assert not untagged, f"{component} lines about job {job_id} without {tag}: {untagged[:3]}"
    assert all(line.endswith(tag) for line in log_lines(worker)), "a worker Pod's every line is about its job"


def test_the_s3_secret_is_in_no_log_of_the_stack(stack: Stack, three_jobs: dict[str, Any]) -> None:
    secret = stack.s3()["secret_key"]
    paths = [*(stack.directory / "logs").glob("*.log"), *(stack.directory / "pods" / "logs").glob("*")]
    assert len(paths) >= 5
    for path in paths:
        assert secret not in path.read_text(errors="replace"), f"the S3 secret key is in {path}"


@pytest.fixture(scope="module")
def json_api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A second API replica of the stack with JSON logs, debug level and bearer tokens."""
    folder = tmp_path_factory.mktemp("json-logs")
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN} carol\n")
    port = free_port()
    env = stack.process_env("api") | {"INGEST_API_PORT": str(port), "INGEST_AUTH_TOKENS_FILE": str(tokens),
                                      "INGEST_LOG_FORMAT": "json", "INGEST_LOG_LEVEL": "DEBUG"}
    log = folder / "api.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "ingest.api"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{url}/readyz"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, log
    finally:
        stop_pid(process.pid)


def test_json_logs_carry_the_job_and_no_token(stack: Stack, json_api: tuple[str, Path]) -> None:
    url, log = json_api
    body, _ = bundle({"j.txt": b"json"})
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        assert client.post("/upload", content=body,
                           headers={"Authorization": "Bearer not-the-token"}).status_code == 401
        response = client.post("/upload", content=body)
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        assert wait_complete(client, job_id)["state"] == "OK"
    text = log.read_text()
    assert TOKEN not in text and stack.s3()["secret_key"] not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON record
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(record["logger"].startswith("uvicorn") for record in records), "uvicorn's lines follow the format"
    about = [record for record in records if re.search(rf"\bjob {job_id}\b", record["message"])]
    assert about and all(record.get("job_id") == job_id for record in about)


def test_the_redacting_filter_masks_credentials() -> None:
    logs.add_secrets(["a-configured-secret-value"])
    text = logs.redact("sent Authorization: Bearer abc.def to s3 with a-configured-secret-value, X-Amz-Signature=00ff")
    assert "abc.def" not in text and "a-configured-secret-value" not in text and "00ff" not in text
    assert logs.redact("job 12: staged 512 bytes") == "job 12: staged 512 bytes"
