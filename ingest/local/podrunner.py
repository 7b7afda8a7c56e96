"""The local pod runner: plays kubelet for the Pods in the Kubernetes API emulator.

No machine we build on has a container engine, so a Pod's first container runs as a local
subprocess: its `command` + `args`, with the Pod's environment resolved the way kubelet resolves
it (`value`, `fieldRef`, `secretKeyRef`, `configMapKeyRef`, `envFrom`), plus what a process needs
on this machine: the project's virtualenv first on PATH, a kubeconfig that carries the Pod's
ServiceAccount identity, and `INGEST_TERMINATION_LOG` pointing at the file that stands in for
`/dev/termination-log`. The image is ignored: every Pod runs the project's own code.

The Pod's status moves Pending -> Running -> Succeeded/Failed with `containerStatuses` (exit code,
reason, termination message); `activeDeadlineSeconds` is enforced. The operator cannot tell it is
not on a cluster.

Deletion is graceful, as a kubelet makes it: the runner holds a finalizer on every Pod whose
process it runs, so a deleted Pod stays (Terminating) while its process gets SIGTERM and, after the
grace period, SIGKILL; the Pod goes once the process is gone. `kubectl delete --grace-period=0
--force` removes the Pod at once; a process that is stopped (SIGSTOP: a frozen or unreachable
node) is then left alive, to show what a worker does when it wakes up without its Pod.

Each running process's pid is in `<workdir>/pids/<pod>.pid`, so tests can pause (SIGSTOP) and
resume (SIGCONT) a worker at a chosen moment without guessing which process is whose.
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("podrunner")
FINALIZER = "local.ingest.pacifica.org/process"  # held while the Pod's process may run


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def service_account_kubeconfig(directory: Path, server: str, namespace: str, account: str) -> Path:
    """A kubeconfig whose bearer token names the ServiceAccount, as the emulator identifies users."""
    path = directory / f"kubeconfig-sa-{namespace}-{account}"
    if not path.exists():
        user = f"system:serviceaccount:{namespace}:{account}"
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {"server": server}}],
            "users": [{"name": user, "user": {"token": user}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user, "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
    return path


def stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP), as /proc shows it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


class RunningPod:
    """One Pod's process and the thread that waits for it."""

    def __init__(self, process: subprocess.Popen, termination_log: Path, deadline: float | None) -> None:
        self.process = process
        self.termination_log = termination_log
        self.deadline = deadline
        self.deadline_exceeded = False
        self.deleted = False


class PodRunner:
    def __init__(self, *, client: kubernetes.client.ApiClient, server: str, namespace: str, workdir: Path) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.server = server
        self.namespace = namespace
        self.workdir = workdir
        self.pods: dict[str, RunningPod] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        (workdir / "pids").mkdir(parents=True, exist_ok=True)

    # --- environment ---------------------------------------------------------------------
    def _secret(self, name: str) -> dict[str, str]:
        secret = self.core.read_namespaced_secret(name, self.namespace)
        data = {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
        return data | dict(secret.string_data or {})

    def _config_map(self, name: str) -> dict[str, str]:
        return dict(self.core.read_namespaced_config_map(name, self.namespace).data or {})

    def environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        meta = pod["metadata"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                env |= self._secret(source["secretRef"]["name"])
            elif "configMapRef" in source:
                env |= self._config_map(source["configMapRef"]["name"])
        fields = {"metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", self.namespace),
                  "metadata.uid": meta.get("uid", ""),
                  "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "fieldRef" in ref:
                    env[item["name"]] = fields.get(ref["fieldRef"]["fieldPath"], "")
                elif "secretKeyRef" in ref:
                    env[item["name"]] = self._secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
                elif "configMapKeyRef" in ref:
                    env[item["name"]] = self._config_map(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
        account = pod["spec"].get("serviceAccountName") or "default"
        venv_bin = str(Path(sys.executable).parent)
        return env | {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "KUBECONFIG": str(service_account_kubeconfig(self.workdir, self.server, self.namespace, account)),
            "INGEST_TERMINATION_LOG": str(self.workdir / "logs" / f"{meta['name']}.termination-log"),
        }

    # --- status --------------------------------------------------------------------------
    def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})
        except ApiException as error:
            if error.status != 404:  # a deleted Pod has no status to report
                log.warning("pod %s: status patch failed: %s", name, error.reason)

    def _container_status(self, container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": ready, "restartCount": 0, "started": ready, "state": state}

    # --- life cycle ----------------------------------------------------------------------
    def start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        command = list(container.get("command") or []) + list(container.get("args") or [])
        try:
            env = self.environment(pod, container)
        except (ApiException, KeyError) as error:
            reason = getattr(error, "reason", None) or f"missing key {error}"
            self._patch_status(name, {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False",
                                      "reason": "CreateContainerConfigError", "message": str(reason)}]})
            log.warning("pod %s: cannot resolve its environment: %s", name, reason)
            return
        if not self._hold(name):
            return  # deleted before it started: nothing to run
        termination_log = Path(env["INGEST_TERMINATION_LOG"])
        termination_log.unlink(missing_ok=True)
        output = open(self.workdir / "logs" / f"{name}.log", "ab")
        try:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.workdir)
        except OSError as error:
            output.close()
            self._finish(name, container, 128, "StartError", str(error), "Failed")
            return
        output.close()
        deadline = pod["spec"].get("activeDeadlineSeconds")
        running = RunningPod(process, termination_log, time.monotonic() + deadline if deadline else None)
        with self.lock:
            self.pods[name] = running
        self._pid_file(name).write_text(str(process.pid))
        started = now()
        self._patch_status(name, {
            "phase": "Running", "startTime": started, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
            "containerStatuses": [self._container_status(container, {"running": {"startedAt": started}}, True)],
        })
        log.info("pod %s: started pid %d: %s", name, process.pid, " ".join(command))
        threading.Thread(target=self._wait, args=(name, container, running), daemon=True).start()

    def _wait(self, name: str, container: dict[str, Any], running: RunningPod) -> None:
        process = running.process
        while True:
            try:
                code = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if running.deadline and time.monotonic() > running.deadline and not running.deadline_exceeded:
                    running.deadline_exceeded = True
                    self._terminate(process, grace=5)
        with self.lock:
            self.pods.pop(name, None)
        self._pid_file(name).unlink(missing_ok=True)
        if running.deleted or self.stopping.is_set():
            if not self.stopping.is_set():
                self._release(name)
            return
        message = running.termination_log.read_text(errors="replace") if running.termination_log.exists() else ""
        if running.deadline_exceeded:
            self._finish(name, container, code, "DeadlineExceeded", message, "Failed",
                         pod_reason="DeadlineExceeded",
                         pod_message="Pod was active on the node longer than the specified deadline")
            return
        reason = "Completed" if code == 0 else "Error"
        self._finish(name, container, code, reason, message, "Succeeded" if code == 0 else "Failed")

    def _finish(self, name: str, container: dict[str, Any], code: int, reason: str, message: str, phase: str,
                pod_reason: str | None = None, pod_message: str | None = None) -> None:
        exit_code = code if code >= 0 else 128 - code  # killed by signal N: 128+N, as containers report
        finished = now()
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": finished}],
            "containerStatuses": [self._container_status(container, {"terminated": {
                "exitCode": exit_code, "reason": reason, "message": message[-4096:], "finishedAt": finished}}, False)],
        }
        if pod_reason:
            status |= {"reason": pod_reason, "message": pod_message}
        self._patch_status(name, status)
        self._release(name)  # the process is gone: nothing left to wait for when the Pod is deleted
        log.info("pod %s: %s (exit code %d, %s)", name, phase, exit_code, reason)

    def _terminate(self, process: subprocess.Popen, grace: float) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        threading.Thread(target=self._kill_after, args=(process, grace), daemon=True).start()

    def _kill_after(self, process: subprocess.Popen, grace: float) -> None:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _pid_file(self, name: str) -> Path:
        return self.workdir / "pids" / f"{name}.pid"

    def _hold(self, name: str) -> bool:
        """Put our finalizer on the Pod before its process starts; False if it is being deleted."""
        try:
            self.core.patch_namespaced_pod(name, self.namespace, {"metadata": {"finalizers": [FINALIZER]}})
            return True
        except ApiException as error:
            if error.status not in (404, 409, 422):
                raise
            return False

    def _release(self, name: str) -> None:
        """Drop our finalizer: the Pod may go (at once, if it is being deleted)."""
        try:
            pod = json.loads(self.core.read_namespaced_pod(name, self.namespace, _preload_content=False).data)
            finalizers = pod["metadata"].get("finalizers") or []
            if FINALIZER not in finalizers:
                return
            position = finalizers.index(FINALIZER)
            self.core.patch_namespaced_pod(name, self.namespace, [
                {"op": "test", "path": f"/metadata/finalizers/{position}", "value": FINALIZER},
                {"op": "remove", "path": f"/metadata/finalizers/{position}"},
            ], _content_type="application/json-patch+json")
        except ApiException as error:
            if error.status not in (404, 409, 422):
                log.warning("pod %s: could not release its finalizer: %s", name, error.reason)

    def deleted(self, pod: dict[str, Any], gone: bool = False) -> None:
        """The Pod is being deleted (or is gone): stop its process as a kubelet would."""
        name = pod["metadata"]["name"]
        with self.lock:
            running = self.pods.get(name)
        if running is None:
            if not gone:
                self._release(name)
            return
        if running.deleted:
            return
        running.deleted = True
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        if grace == 0 and not gone:  # forced: the Pod goes now, whatever its process does
            self._release(name)
            if stopped(running.process.pid):
                log.info("pod %s: force-deleted; its process %d is stopped (an unreachable node) and lives on",
                         name, running.process.pid)
                return
        log.info("pod %s: deleted; stopping pid %d (grace %s s)", name, running.process.pid, grace)
        self._terminate(running.process, grace)

    def observe(self, event_type: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        if event_type == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            self.deleted(pod, gone=event_type == "DELETED")
        elif phase in (None, "", "Pending") and name not in self.pods:
            self.start(pod)
        elif phase == "Running" and name not in self.pods:
            # Running, but no process of ours: this runner restarted and lost it, as a node would.
            container = pod["spec"]["containers"][0]
            self._finish(name, container, 137, "Error", "the pod runner restarted and lost the process", "Failed")

    # --- watch loop -----------------------------------------------------------------------
    def run(self) -> None:
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listing = json.loads(self.core.list_namespaced_pod(self.namespace, _preload_content=False).data)
                    for pod in listing.get("items", []):
                        self.observe("ADDED", pod)
                    version = listing["metadata"]["resourceVersion"]
                response = self.core.list_namespaced_pod(
                    self.namespace, watch=True, resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=60, _preload_content=False,
                )
                for line in response:
                    if self.stopping.is_set():
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.observe(event["type"], event["object"])
            except Exception as error:
                if self.stopping.is_set():
                    break
                log.warning("watch failed (%s); listing again", error)
                version = None
                time.sleep(1)

    def shutdown(self) -> None:
        """Stop every process (a node going down): SIGTERM, then SIGKILL."""
        self.stopping.set()
        with self.lock:
            running = list(self.pods.values())
        for pod in running:
            self._terminate(pod.process, grace=5)
        for pod in running:
            try:
                pod.process.wait(timeout=6)
            except subprocess.TimeoutExpired:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.local.podrunner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    runner = PodRunner(client=kubernetes.client.ApiClient(configuration), server=configuration.host,
                       namespace=args.namespace, workdir=args.workdir)

    def on_signal(signum: int, frame: object) -> None:
        runner.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()


if __name__ == "__main__":
    main()
