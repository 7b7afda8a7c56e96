"""The real kubectl (1.37, watch-list mode on) against the emulator."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import yaml


def _manifest(name: str, job_id: int, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "ingest.pacifica.org/v1", "kind": "IngestJob",
                           "metadata": {"name": name},
                           "spec": {"jobId": job_id, "operation": "upload", **spec}})


def test_get_crd(kubectl: Any) -> None:
    out = kubectl("get", "crd").stdout
    assert "ingestjobs.ingest.pacifica.org" in out and "CREATED AT" in out


def test_apply_and_get_with_printer_columns(kubectl: Any, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-60", 60)).stdout
    assert "ingestjob.ingest.pacifica.org/ingest-60 created" in out
    kubectl("patch", "-n", namespace, "ij", "ingest-60", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"state": "OK", "task": "open tar", "taskPercent": 12.5,
                                         "complete": False}}))
    lines = kubectl("get", "-n", namespace, "ingestjobs").stdout.splitlines()
    assert lines[0].split() == ["NAME", "JOB", "ID", "STATE", "TASK", "PERCENT", "COMPLETE", "AGE"]
    assert lines[1].split()[:7] == ["ingest-60", "60", "OK", "open", "tar", "12.5", "false"]
    assert kubectl("get", "-n", namespace, "ij").stdout.splitlines()[1].startswith("ingest-60")
    assert "ingest-60" in kubectl("get", "-n", namespace, "pacifica").stdout  # category
    again = kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-60", 60, user="u")).stdout
    assert "configured" in again
    assert kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                   input=_manifest("ingest-61", 61)).returncode == 0


def test_apply_refuses_unknown_fields_and_wrong_types(kubectl: Any, namespace: str) -> None:
    bad = kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-62", 62, foo=1), check=False)
    assert bad.returncode != 0 and 'unknown field "spec.foo"' in bad.stderr
    bad = kubectl("create", "-n", namespace, "-f", "-",
                  input=_manifest("ingest-63", 63).replace("jobId: 63", "jobId: sixty"), check=False)
    assert bad.returncode != 0 and "must be of type integer" in bad.stderr
    assert "No resources found" in kubectl("get", "-n", namespace, "ij").stderr


def test_get_watch_sees_a_change(kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-64", 64))
    watcher = kubectl.popen("get", "-n", namespace, "ij", "-w", "--request-timeout=4s")
    time.sleep(1.5)
    kubectl("patch", "-n", namespace, "ij", "ingest-64", "--subresource=status", "--type=merge",
            "-p", '{"status":{"state":"FAILED"}}')
    try:
        out, _ = watcher.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        watcher.kill()
        out, _ = watcher.communicate()
    assert "FAILED" in out and out.count("ingest-64") >= 2


def test_wait_for_jsonpath(kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-65", 65))
    threading.Timer(1.0, lambda: kubectl(
        "patch", "-n", namespace, "ij", "ingest-65", "--subresource=status", "--type=merge",
        "-p", '{"status":{"state":"FAILED"}}')).start()
    started = time.monotonic()
    out = kubectl("wait", "-n", namespace, "--for=jsonpath={.status.state}=FAILED",
                  "ij/ingest-65", "--timeout=15s").stdout
    assert "condition met" in out and time.monotonic() - started < 10


def test_delete_waits_for_finalizer(kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-66", 66))
    kubectl("patch", "-n", namespace, "ij", "ingest-66", "--type=merge",
            "-p", '{"metadata":{"finalizers":["ingest.pacifica.org/hold"]}}')
    threading.Timer(1.5, lambda: kubectl(
        "patch", "-n", namespace, "ij", "ingest-66", "--type=json",
        "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')).start()
    started = time.monotonic()
    out = kubectl("delete", "-n", namespace, "ij", "ingest-66", "--timeout=15s").stdout
    took = time.monotonic() - started
    assert "deleted" in out and 1.3 < took < 10
    assert kubectl("get", "-n", namespace, "ij", "ingest-66", check=False).returncode != 0


def test_describe_shows_events(kubectl: Any, namespace: str, api_client: Any) -> None:
    import kubernetes

    kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("ingest-67", 67))
    uid = kubectl("get", "-n", namespace, "ij", "ingest-67", "-o", "jsonpath={.metadata.uid}").stdout
    kubernetes.client.CoreV1Api(api_client).create_namespaced_event(namespace, {
        "metadata": {"name": "ingest-67.1"}, "reason": "Staged", "message": "bundle staged",
        "type": "Normal", "involvedObject": {"apiVersion": "ingest.pacifica.org/v1",
                                             "kind": "IngestJob", "name": "ingest-67",
                                             "namespace": namespace, "uid": uid}})
    out = kubectl("describe", "-n", namespace, "ij", "ingest-67").stdout
    assert "Job Id:" in out and "67" in out
    assert "Staged" in out and "bundle staged" in out
