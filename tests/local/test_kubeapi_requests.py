"""The request log: identities from bearer tokens, Kubernetes verbs, a bounded raw log and an
aggregate over the whole run."""
from __future__ import annotations

from typing import Any

FIELDS = {"time", "user", "verb", "group", "version", "resource", "subresource", "namespace",
          "name", "userAgent", "code"}


def test_requests_are_recorded_per_user_and_verb(kubeapi: Any, namespace: str, ingestjob: Any) -> None:
    base = f"/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs"
    kubeapi.http("DELETE", "/_emulator/requests")
    kubeapi.http("POST", base, ingestjob("ingest-40", 40), user="ingest-api")
    kubeapi.http("PATCH", base + "/ingest-40/status", {"status": {"state": "OK"}},
                 user="ingest-worker", content_type="application/merge-patch+json")
    kubeapi.http("GET", base + "/ingest-41", user="ingest-operator")
    kubeapi.http("GET", base)
    code, log = kubeapi.http("GET", "/_emulator/requests")
    assert code == 200
    entries = log["requests"]
    assert all(FIELDS <= set(e) for e in entries)
    triples = [(e["user"], e["verb"], e["subresource"], e["code"]) for e in entries
               if e["resource"] == "ingestjobs"]
    assert triples == [("ingest-api", "create", "", 201), ("ingest-worker", "patch", "status", 200),
                       ("ingest-operator", "get", "", 404), ("admin", "list", "", 200)]
    assert entries[0]["group"] == "ingest.pacifica.org" and entries[0]["namespace"] == namespace
    assert entries[1]["name"] == "ingest-40" and entries[1]["version"] == "v1"
    usage = {(u["user"], u["verb"], u["group"], u["resource"], u["subresource"]): u["count"]
             for u in log["usage"]}
    assert usage[("ingest-worker", "patch", "ingest.pacifica.org", "ingestjobs", "status")] == 1
    kubeapi.http("DELETE", "/_emulator/requests")
    code, log = kubeapi.http("GET", "/_emulator/requests")
    assert [e for e in log["requests"] if e["resource"]] == [] and log["usage"] == []


def test_anonymous_without_a_token(kubeapi: Any) -> None:
    import urllib.request

    kubeapi.http("DELETE", "/_emulator/requests")
    urllib.request.urlopen(kubeapi.url + "/api/v1/namespaces/default").read()
    code, log = kubeapi.http("GET", "/_emulator/requests")
    entry = next(e for e in log["requests"] if e["resource"] == "namespaces")
    assert entry["user"] == "system:anonymous" and entry["verb"] == "get"


def test_raw_log_is_bounded_and_usage_aggregates(spawn_emulator: Any) -> None:
    emulator = spawn_emulator("--request-log", "10")
    for _ in range(30):
        emulator.http("GET", "/api/v1/namespaces/default", user="bot")
    code, log = emulator.http("GET", "/_emulator/requests")
    assert len(log["requests"]) == 10
    assert {"user": "bot", "verb": "get", "group": "", "resource": "namespaces",
            "subresource": "", "count": 30} in log["usage"]
