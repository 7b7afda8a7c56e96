"""``--data FILE``: state survives a restart; SIGTERM stops the server promptly and saves."""
from __future__ import annotations

import json
import time
from typing import Any


def test_state_survives_restart(spawn_emulator: Any, tmp_path: Any, ingestjob: Any) -> None:
    data = tmp_path / "state.json"
    first = spawn_emulator("--data", str(data))
    base = "/apis/ingest.pacifica.org/v1/namespaces/default/ingestjobs"
    code, created = first.http("POST", base, ingestjob("ingest-50", 50))
    first.http("PATCH", base + "/ingest-50/status", {"status": {"state": "OK"}},
               content_type="application/merge-patch+json")
    conn_watch = __import__("http.client").client.HTTPConnection("127.0.0.1", first.port)
    conn_watch.request("GET", base + "?watch=1")  # an open watch must not delay shutdown
    conn_watch.getresponse()
    started = time.monotonic()
    assert spawn_emulator.stop(first) == 0
    assert time.monotonic() - started < 5
    saved = json.loads(data.read_text())
    assert saved["resourceVersion"] >= int(created["metadata"]["resourceVersion"])
    second = spawn_emulator("--data", str(data))
    code, job = second.http("GET", base + "/ingest-50")
    assert code == 200 and job["status"] == {"state": "OK"}
    assert job["metadata"]["uid"] == created["metadata"]["uid"]
    code, fresh = second.http("POST", base, ingestjob("ingest-51", 51))
    assert int(fresh["metadata"]["resourceVersion"]) > int(job["metadata"]["resourceVersion"])
    log = (tmp_path / f"kubeapi-{first.port}.log").read_text()
    assert log.count("serving the Kubernetes API") == 1


def test_saves_are_debounced_while_running(spawn_emulator: Any, tmp_path: Any) -> None:
    data = tmp_path / "state.json"
    emulator = spawn_emulator("--data", str(data))
    emulator.http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "live"}})
    deadline = time.monotonic() + 5
    while "live" not in data.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not list(tmp_path.glob(".state.json.*"))  # no temporary files left behind
