"""CRD structural schema: validation (422 with causes), pruning, field validation modes."""
from __future__ import annotations

from typing import Any

import kubernetes
import pytest


def _invalid(exc: kubernetes.client.ApiException) -> dict[str, Any]:
    import json

    body = json.loads(exc.body)
    assert exc.status == 422 and body["kind"] == "Status" and body["reason"] == "Invalid"
    return body


def test_types_enums_and_bounds_are_validated(jobs: Any, ingestjob: Any) -> None:
    body = ingestjob("ingest-1", 1)
    body["spec"].update(jobId="one", operation="sideways")
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.create(body)
    status = _invalid(caught.value)
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.jobId"]["reason"] == "FieldValueTypeInvalid"
    assert "must be of type integer" in causes["spec.jobId"]["message"]
    assert causes["spec.operation"]["reason"] == "FieldValueNotSupported"
    assert 'supported values: "upload", "move"' in causes["spec.operation"]["message"]
    assert status["details"]["kind"] == "IngestJob"
    assert status["message"].startswith('IngestJob.ingest.pacifica.org "ingest-1" is invalid: [')

    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.create(ingestjob("ingest-0", 0))  # minimum: 1
    status = _invalid(caught.value)
    assert "should be greater than or equal to 1" in status["message"]


def test_required_fields(jobs: Any) -> None:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.create({"apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob",
                     "metadata": {"name": "ingest-2"}, "spec": {"jobId": 2}})
    status = _invalid(caught.value)
    assert status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.operation"}]


def test_status_is_validated_maximum_and_format(jobs: Any, ingestjob: Any) -> None:
    jobs.create(ingestjob("ingest-3", 3))
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch_status("ingest-3", {"status": {"taskPercent": 101}})
    assert "less than or equal to 100" in _invalid(caught.value)["message"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        jobs.patch_status("ingest-3", {"status": {"created": "yesterday"}})
    assert "must be of type date-time" in _invalid(caught.value)["message"]
    jobs.patch_status("ingest-3", {"status": {"created": "2024-01-02T03:04:05Z", "taskPercent": 100}})
    assert jobs.get("ingest-3")["status"]["taskPercent"] == 100


def test_unknown_fields_are_pruned_but_metadata_is_kept(jobs: Any, ingestjob: Any) -> None:
    body = ingestjob("ingest-4", 4, foo="bar")
    body["metadata"]["annotations"] = {"a": "b"}
    body["extra"] = {"x": 1}
    created = jobs.create(body)
    assert "foo" not in created["spec"] and "extra" not in created
    assert created["metadata"]["annotations"] == {"a": "b"}
    assert created["metadata"]["labels"] == {"ingest.pacifica.org/job-id": "4"}
    jobs.patch_status("ingest-4", {"status": {"state": "OK", "bogus": 1,
                                              "fileIds": {"start": 5, "nope": 2}}})
    status = jobs.get("ingest-4")["status"]
    assert status == {"state": "OK", "fileIds": {"start": 5}}


def test_field_validation_strict_warn_ignore(kubeapi: Any, namespace: str, ingestjob: Any) -> None:
    path = f"/apis/ingest.pacifica.org/v1/namespaces/{namespace}/ingestjobs"
    code, body = kubeapi.http("POST", path + "?fieldValidation=Strict", ingestjob("ingest-5", 5, foo=1))
    assert code == 400 and body["reason"] == "BadRequest"
    assert 'unknown field "spec.foo"' in body["message"]
    import urllib.request

    request = urllib.request.Request(kubeapi.url + path + "?fieldValidation=Warn", method="POST",
                                     data=__import__("json").dumps(ingestjob("ingest-5", 5, foo=1)).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        assert 'unknown field \\"spec.foo\\"' in response.headers.get("Warning", "")
    code, body = kubeapi.http("POST", path + "?fieldValidation=Ignore", ingestjob("ingest-6", 6, foo=1))
    assert code == 201 and "foo" not in body["spec"]
    code, body = kubeapi.http("POST", path + "?fieldValidation=Bogus", ingestjob("ingest-7", 7))
    assert code == 400
