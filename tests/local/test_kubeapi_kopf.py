"""A kopf operator reconciling IngestJobs in the emulator: on.create patches status through
/status, and a finalizer-bearing on.delete handler runs before the object goes away."""
from __future__ import annotations

import textwrap
from typing import Any

import kubernetes
import pytest

OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.create("ingest.pacifica.org", "v1", "ingestjobs")
    def created(spec, patch, logger, **_):
        patch.status["state"] = "OK"
        patch.status["task"] = "open tar"
        logger.info("accepted job %s", spec["jobId"])

    @kopf.on.delete("ingest.pacifica.org", "v1", "ingestjobs")
    def deleted(name, body, **_):
        kopf.info(body, reason="Cleanup", message=f"cleaned up {name}")
''')


@pytest.mark.parametrize("scope", [["--namespace", "default"], ["--all-namespaces"]])
def test_kopf_operator_reconciles(kubeapi: Any, api_client: Any, tmp_path: Any, monkeypatch: Any,
                                  eventually: Any, scope: list[str]) -> None:
    from kopf.testing import KopfRunner

    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    kubeconfig = str(kubeapi.kubeconfig_for("ingest-operator"))
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    # The client read $KUBECONFIG at import time; kopf's login goes through it.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kubeconfig)
    objects = kubernetes.client.CustomObjectsApi(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    name = f"ingest-kopf-{len(scope)}"
    args = ("ingest.pacifica.org", "v1", "default", "ingestjobs")
    kubeapi.http("DELETE", "/_emulator/requests")
    with KopfRunner(["run", "--standalone", *scope, str(operator)], timeout=30) as runner:
        objects.create_namespaced_custom_object(*args, {
            "apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob",
            "metadata": {"name": name}, "spec": {"jobId": 70, "operation": "upload"}})
        job = eventually(lambda: (lambda o: o if (o.get("status") or {}).get("state") == "OK" else None)(
            objects.get_namespaced_custom_object(*args, name)), timeout=15)
        assert job["status"]["task"] == "open tar"
        assert "kopf.zalando.org/KopfFinalizerMarker" in job["metadata"]["finalizers"]
        objects.delete_namespaced_custom_object(*args, name)

        def gone() -> bool:
            try:
                objects.get_namespaced_custom_object(*args, name)
                return False
            except kubernetes.client.ApiException as exc:
                return exc.status == 404

        eventually(gone, timeout=15)

        eventually(lambda: any(e.reason == "Cleanup" for e in core.list_namespaced_event(
            "default", field_selector=f"involvedObject.name={name}").items), timeout=10)
    assert runner.exit_code == 0 and runner.exception is None
    assert "Handler 'deleted' succeeded" in runner.output
    code, log = kubeapi.http("GET", "/_emulator/requests")
    usage = {(u["user"], u["verb"], u["resource"], u["subresource"]) for u in log["usage"]}
    assert ("ingest-operator", "patch", "ingestjobs", "status") in usage
    assert ("ingest-operator", "watch", "ingestjobs", "") in usage
    assert not [e for e in log["requests"] if e["user"] == "ingest-operator" and e["code"] >= 400]
