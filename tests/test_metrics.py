"""Call counting through the clients' public extension points, against a real HTTP server.

The server answers by path (a segment `404` gets a 404, `409` a 409, `slow` waits a second, anything
else 200 with `{}`), so
each test knows which outcome it caused and checks that exactly that series moved.
"""
from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from ingest import metrics
from ingest.config import Settings
from ingest.local.objectstore import free_port
from ingest.storage import Storage


class Answer(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if "/slow" in self.path:
            time.sleep(1)
        code = next((int(part) for part in self.path.split("?")[0].split("/") if part.isdigit()), 200)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"{}" if self.command != "HEAD" else b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that timed out has gone
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def value(name: str, **labels: str) -> float:
    return metrics.API.get_sample_value(name, labels) or 0.0


def deltas(names: list[tuple[str, dict[str, str]]]) -> list[float]:
    return [value(name, **labels) for name, labels in names]


S3 = [("ingest_object_store_requests_total", {"method": "HEAD"}),
      ("ingest_object_store_requests_total", {"method": "PUT"}),
      ("ingest_object_store_errors_total", {"kind": "not_found"}),
      ("ingest_object_store_errors_total", {"kind": "conflict"}),
      ("ingest_object_store_errors_total", {"kind": "connection"}),
      ("ingest_object_store_errors_total", {"kind": "timeout"})]


def test_the_object_store_pool_counts_each_call_and_its_failure_kind(server: str) -> None:
    pool = metrics.ObjectStoreCalls(retries=False)
    before = deltas(S3)
    assert pool.request("HEAD", f"http://{server}/404/bucket").status == 404
    assert pool.request("PUT", f"http://{server}/409/bucket/key", body=b"x").status == 409
    assert pool.request("PUT", f"http://{server}/bucket/key", body=b"x").status == 200
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.request("HEAD", f"http://127.0.0.1:{free_port()}/nobody-listens")
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.request("HEAD", f"http://{server}/slow", timeout=0.2)
    moved = [after - was for after, was in zip(deltas(S3), before, strict=True)]
    assert moved == [3, 2, 1, 1, 1, 1]


def test_an_instrumented_storage_counts_what_the_minio_sdk_sends(server: str) -> None:
    settings = Settings.from_env({"INGEST_S3_ENDPOINT": server, "INGEST_S3_SECURE": "false"})
    storage = metrics.instrument_object_store(Storage(settings))
    assert isinstance(storage.minio._http, metrics.ObjectStoreCalls)
    before = value("ingest_object_store_requests_total", method="HEAD")
    assert storage.minio.bucket_exists("present")  # HEAD /present answers 200
    assert value("ingest_object_store_requests_total", method="HEAD") - before == 1


KUBE = [("ingest_kubernetes_requests_total", {"verb": "GET"}),
        ("ingest_kubernetes_requests_total", {"verb": "PATCH"}),
        ("ingest_kubernetes_errors_total", {"kind": "not_found"}),
        ("ingest_kubernetes_errors_total", {"kind": "conflict"})]


def test_the_kubernetes_client_counts_each_call_and_its_failure_kind(server: str) -> None:
    configuration = kubernetes.client.Configuration(host=f"http://{server}")
    plain = kubernetes.client.ApiClient(configuration, header_name="X-Who", header_value="t")
    client = metrics.instrument_kubernetes(plain)
    assert client.default_headers["X-Who"] == "t" and client.configuration is configuration
    before = deltas(KUBE)
    core = kubernetes.client.CoreV1Api(client)
    with pytest.raises(ApiException) as missing:
        kubernetes.client.CustomObjectsApi(client).get_cluster_custom_object("404", "v1", "things", "x")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as conflict:
        kubernetes.client.CustomObjectsApi(client).patch_cluster_custom_object("409", "v1", "things", "x", {})
    assert conflict.value.status == 409
    core.read_namespace("default", _preload_content=False)  # a raw read (watches use this path) is counted too
    moved = [after - was for after, was in zip(deltas(KUBE), before, strict=True)]
    assert moved == [2, 1, 1, 1]
