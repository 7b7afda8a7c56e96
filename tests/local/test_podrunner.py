"""The pod runner plays kubelet: Pods in the emulator become processes, and their ends become Pod status."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.local.conftest import Emulator


@pytest.fixture()
def runner(kubeapi: Emulator, namespace: str, tmp_path: Path) -> Iterator[str]:
    kubeconfig = kubeapi.kubeconfig_for("pod-runner", namespace)  # no ":" in a kubeconfig path
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.local.podrunner", "--kubeconfig", str(kubeconfig), "--namespace", namespace,
         "--workdir", str(tmp_path / "pods")],
        stdout=open(tmp_path / "podrunner.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield namespace
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)


def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "ignored", "command": ["python", "-c", script],
            "env": [{"name": "GREETING", "value": "hello"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        }], **spec},
    }


def wait_phase(core: kubernetes.client.CoreV1Api, namespace: str, name: str, phases: set[str],
               timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = core.read_namespaced_pod(name, namespace)
        if current.status and current.status.phase in phases:
            return current
        time.sleep(0.1)
    raise AssertionError(f"pod {name} never reached {phases}")


def test_pod_runs_to_succeeded_with_its_environment(api_client: Any, runner: str, tmp_path: Path) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    out = tmp_path / "out.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['GREETING'] + ' ' + os.environ['POD_NAME'])"
    core.create_namespaced_pod(runner, pod("ok", script))
    done = wait_phase(core, runner, "ok", {"Succeeded", "Failed"})
    assert done.status.phase == "Succeeded"
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert out.read_text() == "hello ok"


def test_failing_pod_reports_exit_code_and_termination_message(api_client: Any, runner: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    script = "import os, sys; open(os.environ['INGEST_TERMINATION_LOG'], 'w').write('disk on fire'); sys.exit(3)"
    core.create_namespaced_pod(runner, pod("bad", script))
    done = wait_phase(core, runner, "bad", {"Succeeded", "Failed"})
    assert done.status.phase == "Failed"
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", "disk on fire")


def test_deleting_a_pod_terminates_its_process(api_client: Any, runner: str, tmp_path: Path) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    core.create_namespaced_pod(runner, pod("sleeper", script))
    wait_phase(core, runner, "sleeper", {"Running"})
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    core.delete_namespaced_pod("sleeper", runner)
    deadline = time.monotonic() + 15
    while (
        time.monotonic() < deadline
        and os.path.exists(f"/proc/{pid}")
        and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]
    ):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_active_deadline_fails_the_pod(api_client: Any, runner: str) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_pod(runner, pod("slow", "import time; time.sleep(600)", activeDeadlineSeconds=1))
    done = wait_phase(core, runner, "slow", {"Succeeded", "Failed"})
    assert (done.status.phase, done.status.reason) == ("Failed", "DeadlineExceeded")
