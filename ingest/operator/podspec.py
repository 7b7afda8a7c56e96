"""Worker Pods: one per attempt at one IngestJob (owned by the job), or a warm pool worker; same image."""
from __future__ import annotations

from typing import Any

from ingest import jobs
from ingest.config import Settings

WORKER = "worker"
POOL_WORKER = "pool-worker"
TERMINATION_GRACE_SECONDS = 30  # the operator deletes worker Pods with exactly this grace: never less


def worker_pod_name(job_name: str, attempt: int) -> str:
    return f"{job_name}-worker-{attempt}"


def worker_pod(job: dict[str, Any], settings: Settings, attempt: int) -> dict[str, Any]:
    meta = job["metadata"]
    pod = _pod(
        settings, name=worker_pod_name(meta["name"], attempt), component=WORKER,
        command=["python", "-m", "ingest.worker"],
        env={"INGEST_JOB_NAME": meta["name"], "INGEST_ATTEMPT": str(attempt)},
        requests={"cpu": settings.worker_cpu, "memory": settings.worker_memory},
    )
    pod["metadata"]["labels"][jobs.JOB_ID_LABEL] = str(job["spec"]["jobId"])
    pod["metadata"]["ownerReferences"] = [{
        "apiVersion": jobs.API_VERSION, "kind": jobs.KIND, "name": meta["name"], "uid": meta["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }]
    pod["spec"]["activeDeadlineSeconds"] = settings.worker_deadline_seconds
    return pod


def pool_pod(settings: Settings) -> dict[str, Any]:
    """A warm pool worker: no job of its own, no deadline (each job has one), named by the API server."""
    pod = _pod(
        settings, name=None, component=POOL_WORKER, command=["python", "-m", "ingest.worker.pool"],
        env={}, requests={"cpu": settings.pool_cpu, "memory": settings.pool_memory},
    )
    pod["metadata"]["generateName"] = "ingest-pool-"
    return pod


def _pod(settings: Settings, *, name: str | None, component: str, command: list[str], env: dict[str, str],
         requests: dict[str, str]) -> dict[str, Any]:
    env = {**settings.worker_environment(), **env, "INGEST_LOG_LEVEL": settings.log_level}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {jobs.COMPONENT_LABEL: component}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": settings.worker_service_account,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": WORKER,
                "image": settings.worker_image,
                "command": command,
                "env": [{"name": key, "value": value} for key, value in sorted(env.items())]
                + [{"name": "INGEST_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "INGEST_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
                "envFrom": [{"secretRef": {"name": settings.worker_secret}}],
                "resources": {
                    "requests": requests,
                    "limits": {"cpu": settings.worker_cpu_limit, "memory": settings.worker_memory_limit},
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }
    if name:
        pod["metadata"]["name"] = name
    if settings.move_pvc:  # the volume /move sources live on (the chart's moveVolume)
        pod["spec"]["volumes"] = [{"name": "move", "persistentVolumeClaim": {"claimName": settings.move_pvc}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "move", "mountPath": settings.move_mount}]
        pod["spec"]["securityContext"]["fsGroup"] = 10001  # the image's user may then remove moved sources
    return pod


def failure_reason(pod: dict[str, Any]) -> tuple[str, bool]:
    """Why a worker Pod failed, in words, and whether another attempt could help."""
    status = pod.get("status") or {}
    name = pod["metadata"]["name"]
    if status.get("reason") == "DeadlineExceeded":
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        return (f"the job ran past its deadline of {deadline} s (INGEST_WORKER_DEADLINE_SECONDS); "
                f"worker Pod {name} was stopped"), False
    if status.get("reason") == "Evicted":
        return f"worker Pod {name} was evicted: {status.get('message') or 'no message'}", True
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            reason = terminated.get("reason") or "Error"
            message = (terminated.get("message") or "").strip()
            text = f"worker Pod {name} failed: exit code {terminated.get('exitCode')} ({reason})"
            if reason == "OOMKilled":
                text += "; it ran out of memory (INGEST_WORKER_MEMORY_LIMIT)"
            return (f"{text}: {message}" if message else text), True
    return f"worker Pod {name} failed: {status.get('message') or status.get('reason') or 'no reason given'}", True


def terminated(pod: dict[str, Any]) -> bool:
    """Its container has exited (restartPolicy Never): it can write nothing more."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def can_write(pod: dict[str, Any]) -> bool:
    """A Pod whose process may still run: not yet terminated, or Terminating (deletion under way)."""
    return not terminated(pod) or bool(pod["metadata"].get("deletionTimestamp"))
