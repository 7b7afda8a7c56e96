"""Optional authentication, on a second API replica of the same stack started with auth configured."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Iterator

import httpx
import pytest

from ingest.kube import JobStore
from ingest.local.launcher import Stack, http_ok, stop_pid
from ingest.local.objectstore import free_port
from tests.integration.bundles import bundle
from tests.integration.helpers import wait_complete

pytestmark = pytest.mark.stack
TOKEN = "s3cr3t-t0ken-for-alice"


@pytest.fixture(scope="module")
def secured(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("auth")
    tokens = folder / "tokens"
    tokens.write_text(f"# token user\n{TOKEN} alice\n")
    port = free_port()
    env = stack.process_env("api") | {"INGEST_API_PORT": str(port), "INGEST_AUTH_TOKENS_FILE": str(tokens),
                                      "INGEST_AUTH_HEADER": "X-Http-Authed-User"}
    log = open(folder / "api.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "ingest.api"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not http_ok(f"{url}/readyz"):
        assert process.poll() is None and time.monotonic() < deadline, (folder / "api.log").read_text()
        time.sleep(0.1)
    yield url
    stop_pid(process.pid)
    assert TOKEN not in (folder / "api.log").read_text(), "a token must never reach the log"


def test_without_credentials_everything_but_probes_is_401(secured: str) -> None:
    body, _ = bundle({"a.txt": b"a"})
    with httpx.Client(base_url=secured) as client:
        for method, path in [("POST", "/upload"), ("POST", "/ingest"), ("POST", "/move"), ("GET", "/get_state?job_id=1"), ("GET", "/get_state/1")]:
            response = client.request(method, path, content=body if method == "POST" else None)
            assert response.status_code == 401, (method, path, response.text)
            assert "Traceback" not in response.text and "authentication required" in response.json()["message"]
        wrong = client.post("/upload", content=body, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        for path in ("/", "/healthz", "/readyz"):
            assert client.get(path).status_code == 200


def test_a_valid_token_names_the_user_in_the_job(secured: str, job_store: JobStore) -> None:
    body, _ = bundle({"a.txt": b"a"})
    with httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        response = client.post("/upload", content=body)
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        assert wait_complete(client, job_id)["state"] == "OK"
    assert job_store.get(f"ingest-{job_id}")["spec"]["user"] == "alice"


def test_a_trusted_proxy_header_names_the_user(secured: str, job_store: JobStore) -> None:
    body, _ = bundle({"b.txt": b"b"})
    with httpx.Client(base_url=secured, headers={"X-Http-Authed-User": "bob"}, timeout=60) as client:
        response = client.post("/upload", content=body)
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        assert client.get(f"/get_state/{job_id}").status_code == 200
    assert job_store.get(f"ingest-{job_id}")["spec"]["user"] == "bob"
