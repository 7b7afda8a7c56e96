"""Every setting of the service, read from environment variables, documented in one place.

Each component (API, operator, worker, IngestCMD) builds one `Settings` at start-up with
`Settings.from_env()`; nothing else reads the environment. The README's Configuration table is
made from the `ENV` list below, so the two cannot drift.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ingest.bundle import (
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_LIMITS,
    DEFAULT_METADATA_KEY_TEMPLATE,
    Limits,
    check_key_template,
    check_metadata_key_template,
)

_SA_NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MiB: Final = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Var:
    """One environment variable: its name, default and meaning."""

    name: str
    default: str
    help: str


ENV: Final[tuple[Var, ...]] = (
    Var("INGEST_NAMESPACE", "", "Namespace of the IngestJobs (default: the Pod's own namespace, else `default`)."),
    Var("INGEST_S3_ENDPOINT", "127.0.0.1:9000", "Object store `host:port` (MinIO or any S3 server)."),
    Var("INGEST_S3_ACCESS_KEY", "", "Object store access key."),
    Var("INGEST_S3_SECRET_KEY", "", "Object store secret key."),
    Var("INGEST_S3_SECURE", "false", "Use HTTPS to the object store."),
    Var("INGEST_S3_REGION", "us-east-1", "Object store region."),
    Var("INGEST_S3_TIMEOUT_SECONDS", "60", "Longest wait for an object store answer (a full or stuck store fails jobs, naming it)."),
    Var("INGEST_STAGING_BUCKET", "ingest-staging", "Bucket for uploaded bundles and move documents."),
    Var("INGEST_ARCHIVE_BUCKET", "ingest-archive", "Bucket for ingested files and metadata documents."),
    Var("INGEST_ARCHIVE_KEY_TEMPLATE", DEFAULT_KEY_TEMPLATE, "Archive key of a file; fields job_id (required), file_id, subdir, name, path."),
    Var("INGEST_METADATA_KEY_TEMPLATE", DEFAULT_METADATA_KEY_TEMPLATE, "Archive key of a job's final metadata document (field job_id, required); outside the keys files can have."),
    Var("INGEST_PART_SIZE", str(16 * MiB), "Multipart part size in bytes (staging uploads and large files)."),
    Var("INGEST_MAX_BODY_BYTES", str(1024 * 1024 * MiB), "Largest accepted request body (413 above it)."),
    Var("INGEST_MAX_MEMBERS", "1000000", "Most tar members a bundle may hold."),
    Var("INGEST_MAX_METADATA_BYTES", str(64 * MiB), "Largest accepted metadata.txt (or /move document)."),
    Var("INGEST_MAX_LISTED_PROBLEMS", str(DEFAULT_LIMITS.max_listed_problems), "Files a failed job's exception lists one line each (and status.problems holds); all are counted."),
    Var("INGEST_UPLOAD_CONCURRENCY", "16", "Files (or batches of small files) a worker uploads in parallel."),
    Var("INGEST_MOVE_ROOTS", "", "Colon-separated folders /move may take files from (mounted into worker Pods); a root containing "
        "`{user}` is that user's (with authentication on, a user moves only from their own roots); empty: none."),
    Var("INGEST_MOVE_PVC", "", "PersistentVolumeClaim mounted into worker Pods for /move sources; empty: none."),
    Var("INGEST_MOVE_MOUNT", "/move", "Where worker Pods mount INGEST_MOVE_PVC (put it in INGEST_MOVE_ROOTS)."),
    Var("INGEST_MOVE_REMOVE_SOURCES", "true", "After a successful /move, delete filesystem sources (as upstream)."),
    Var("INGEST_MOVE_REMOVE_S3_SOURCES", "false", "After a successful /move, delete s3:// sources."),
    Var("INGEST_MOVE_S3_SOURCES", "", "Comma-separated `bucket` or `bucket/prefix` entries /move may read s3:// sources from "
        "(never the staging or archive bucket); empty: no s3:// sources."),
    Var("INGEST_JOB_ID_BLOCK", "10", "Job ids an API replica reserves at a time."),
    Var("INGEST_API_HOST", "0.0.0.0", "Address the API listens on."),
    Var("INGEST_API_PORT", "8066", "Port the API listens on (Pacifica's)."),
    Var("INGEST_API_MEMORY_BUDGET_BYTES", str(192 * MiB), "Bytes an API replica may hold for request bodies at once (staging "
        "buffers, metadata.txt, /move documents and their parsing); past it a request gets 503 with Retry-After."),
    Var("INGEST_WORKER_IMAGE", "pacifica-ingest-k8s:0.1.0", "Image of worker Pods (the service's own image)."),
    Var("INGEST_WORKER_SERVICE_ACCOUNT", "ingest-worker", "ServiceAccount worker Pods run as."),
    Var("INGEST_WORKER_SECRET", "ingest-s3", "Secret whose keys become worker environment variables (object store credentials)."),
    Var("INGEST_WORKER_CPU", "500m", "CPU request of a worker Pod."),
    Var("INGEST_WORKER_MEMORY", "256Mi", "Memory request of a worker Pod."),
    Var("INGEST_WORKER_CPU_LIMIT", "2", "CPU limit of a worker Pod."),
    Var("INGEST_WORKER_MEMORY_LIMIT", "512Mi", "Memory limit of a worker Pod."),
    Var("INGEST_WORKER_DEADLINE_SECONDS", "3600", "activeDeadlineSeconds of a worker Pod: a running job past it fails."),
    Var("INGEST_WORKER_ATTEMPTS", "3", "Worker Pods tried for a job before it fails (bundle errors are never retried)."),
    Var("INGEST_WORKER_MODE", "pool", "`pool`: bundles up to INGEST_POOL_MAX_BUNDLE_BYTES go to warm pool workers, larger ones get a Pod each; `pod`: one worker Pod per job."),
    Var("INGEST_POOL_MIN", "1", "Pool worker Pods kept warm when no job waits (pool mode)."),
    Var("INGEST_POOL_MAX", "4", "Most pool worker Pods the operator runs, however many jobs wait."),
    Var("INGEST_POOL_MAX_BUNDLE_BYTES", str(16 * MiB), "Largest bundle a pool worker takes (read whole, in memory); a larger one gets its own worker Pod."),
    Var("INGEST_POOL_JOBS_PER_WORKER", "4", "Jobs one pool worker runs at the same time."),
    Var("INGEST_POOL_CPU", "250m", "CPU request of a pool worker Pod (limits: INGEST_WORKER_CPU_LIMIT, INGEST_WORKER_MEMORY_LIMIT)."),
    Var("INGEST_POOL_MEMORY", "256Mi", "Memory request of a pool worker Pod."),
    Var("INGEST_LEASE_SECONDS", "30", "A worker proves it still owns its job every third of this; one whose Pod vanished is trusted dead only after it."),
    Var("INGEST_FAILED_POD_RETENTION_SECONDS", "86400", "A failed job's worker Pods stay this long (for `kubectl logs`); a succeeded job's go at once."),
    Var("INGEST_UPLOAD_STALL_SECONDS", "300", "An upload that makes no progress this long fails."),
    Var("INGEST_UPLOAD_EXPIRY_SECONDS", str(24 * 3600), "A resumable (tus) upload with no PATCH this long fails and its parts are removed."),
    Var("INGEST_START_TIMEOUT_SECONDS", "600", "A staged job whose worker has not started this long fails."),
    Var("INGEST_STAGED_RETENTION_SECONDS", str(7 * 24 * 3600), "How long a failed job's staged bundle is kept for a retry."),
    Var("INGEST_JOB_RETENTION_DAYS", "30", "Finished IngestJobs are deleted after this many days (0: kept forever)."),
    Var("INGEST_STATE_CACHE_FINISHED", "10000", "Finished jobs an API replica keeps in its get_state cache; older ones are read from the Kubernetes API when asked."),
    Var("INGEST_LEADER_LEASE_SECONDS", "15", "Operator replicas: how long the active one's Lease holds; a standby takes over within this after the active one stops renewing."),
    Var("POLICY_INGEST_URL", "", "Pacifica policy service `.../ingest` endpoint; empty: built-in validation only."),
    Var("METADATA_INGEST_URL", "", "Pacifica metadata service `.../ingest` endpoint; empty: the archive keeps the document."),
    Var("INGEST_AUTH_TOKENS_FILE", "", "File of `token user` lines (or a JSON object): bearer tokens the API accepts; empty: no tokens."),
    Var("INGEST_AUTH_HEADER", "", "Header a trusted proxy sets to the authenticated user (e.g. X-Http-Authed-User); empty: none."),
    Var("INGEST_ADMIN_USERS", "", "Comma-separated users who may fail, cancel and retry any job from the API and console and see every job; `*`: everyone (e.g. with authentication off); empty: nobody."),
    Var("INGEST_AUTH_TRUSTED_PROXIES", "", "Comma-separated CIDRs of the proxies whose INGEST_AUTH_HEADER is believed "
        "(the socket peer's address; X-Forwarded-For is never read); required with INGEST_AUTH_HEADER."),
    Var("INGEST_AUTH_OIDC_ISSUER", "", "OIDC issuer URL: bearer JWTs it signed are accepted (keys from its JWKS); empty: no OIDC."),
    Var("INGEST_AUTH_OIDC_AUDIENCE", "", "The audience (`aud`) an OIDC token must carry; required with INGEST_AUTH_OIDC_ISSUER."),
    Var("INGEST_AUTH_OIDC_USER_CLAIM", "sub", "The OIDC token claim that names the user (e.g. preferred_username)."),
    Var("INGEST_LOG_LEVEL", "INFO", "Log level."),
    Var("INGEST_LOG_FORMAT", "text", "`text` (one line per event, `job_id=N` on lines about a job) or `json` (one JSON object per line)."),
    Var("INGEST_OPERATOR_METRICS_PORT", "9090", "Port of the operator's Prometheus `/metrics` endpoint (0: none)."),
)


def _env(environ: Mapping[str, str], name: str) -> str:
    default = next(var.default for var in ENV if var.name == name)
    return environ.get(name, default)


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _namespace(configured: str) -> str:
    if configured:
        return configured
    try:
        return _SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclasses.dataclass(frozen=True)
class Settings:
    namespace: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_secure: bool
    s3_region: str
    s3_timeout_seconds: float
    staging_bucket: str
    archive_bucket: str
    archive_key_template: str
    metadata_key_template: str
    part_size: int
    max_body_bytes: int
    max_members: int
    max_metadata_bytes: int
    max_listed_problems: int
    upload_concurrency: int
    move_roots: tuple[str, ...]
    move_pvc: str
    move_mount: str
    move_remove_sources: bool
    move_remove_s3_sources: bool
    move_s3_sources: tuple[str, ...]
    job_id_block: int
    api_host: str
    api_port: int
    api_memory_budget_bytes: int
    worker_image: str
    worker_service_account: str
    worker_secret: str
    worker_cpu: str
    worker_memory: str
    worker_cpu_limit: str
    worker_memory_limit: str
    worker_deadline_seconds: int
    worker_attempts: int
    worker_mode: str
    pool_min: int
    pool_max: int
    pool_max_bundle_bytes: int
    pool_jobs_per_worker: int
    pool_cpu: str
    pool_memory: str
    lease_seconds: float
    failed_pod_retention_seconds: float
    upload_stall_seconds: int
    upload_expiry_seconds: int
    start_timeout_seconds: int
    staged_retention_seconds: float
    job_retention_days: float
    state_cache_finished: int
    leader_lease_seconds: float
    policy_url: str
    metadata_url: str
    auth_tokens_file: str
    auth_header: str
    admin_users: frozenset[str]
    auth_trusted_proxies: tuple[str, ...]
    auth_oidc_issuer: str
    auth_oidc_audience: str
    auth_oidc_user_claim: str
    log_level: str
    log_format: str
    operator_metrics_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return _env(env, name)

        return cls(
            namespace=_namespace(get("INGEST_NAMESPACE")),
            s3_endpoint=get("INGEST_S3_ENDPOINT"),
            s3_access_key=get("INGEST_S3_ACCESS_KEY"),
            s3_secret_key=get("INGEST_S3_SECRET_KEY"),
            s3_secure=_flag(get("INGEST_S3_SECURE")),
            s3_region=get("INGEST_S3_REGION"),
            s3_timeout_seconds=max(1.0, float(get("INGEST_S3_TIMEOUT_SECONDS"))),
            staging_bucket=get("INGEST_STAGING_BUCKET"),
            archive_bucket=get("INGEST_ARCHIVE_BUCKET"),
            archive_key_template=get("INGEST_ARCHIVE_KEY_TEMPLATE"),
            metadata_key_template=get("INGEST_METADATA_KEY_TEMPLATE"),
            part_size=max(5 * MiB, int(get("INGEST_PART_SIZE"))),
            max_body_bytes=int(get("INGEST_MAX_BODY_BYTES")),
            max_members=int(get("INGEST_MAX_MEMBERS")),
            max_metadata_bytes=int(get("INGEST_MAX_METADATA_BYTES")),
            max_listed_problems=max(1, int(get("INGEST_MAX_LISTED_PROBLEMS"))),
            upload_concurrency=max(1, int(get("INGEST_UPLOAD_CONCURRENCY"))),
            move_roots=tuple(root for root in get("INGEST_MOVE_ROOTS").split(":") if root),
            move_pvc=get("INGEST_MOVE_PVC"),
            move_mount=get("INGEST_MOVE_MOUNT"),
            move_remove_sources=_flag(get("INGEST_MOVE_REMOVE_SOURCES")),
            move_remove_s3_sources=_flag(get("INGEST_MOVE_REMOVE_S3_SOURCES")),
            move_s3_sources=_list(get("INGEST_MOVE_S3_SOURCES")),
            job_id_block=max(1, int(get("INGEST_JOB_ID_BLOCK"))),
            api_host=get("INGEST_API_HOST"),
            api_port=int(get("INGEST_API_PORT")),
            api_memory_budget_bytes=int(get("INGEST_API_MEMORY_BUDGET_BYTES")),
            worker_image=get("INGEST_WORKER_IMAGE"),
            worker_service_account=get("INGEST_WORKER_SERVICE_ACCOUNT"),
            worker_secret=get("INGEST_WORKER_SECRET"),
            worker_cpu=get("INGEST_WORKER_CPU"),
            worker_memory=get("INGEST_WORKER_MEMORY"),
            worker_cpu_limit=get("INGEST_WORKER_CPU_LIMIT"),
            worker_memory_limit=get("INGEST_WORKER_MEMORY_LIMIT"),
            worker_deadline_seconds=int(get("INGEST_WORKER_DEADLINE_SECONDS")),
            worker_attempts=max(1, int(get("INGEST_WORKER_ATTEMPTS"))),
            worker_mode="pod" if get("INGEST_WORKER_MODE").strip().lower() == "pod" else "pool",
            pool_min=max(0, int(get("INGEST_POOL_MIN"))),
            pool_max=max(1, int(get("INGEST_POOL_MAX")), int(get("INGEST_POOL_MIN"))),
            pool_max_bundle_bytes=int(get("INGEST_POOL_MAX_BUNDLE_BYTES")),
            pool_jobs_per_worker=max(1, int(get("INGEST_POOL_JOBS_PER_WORKER"))),
            pool_cpu=get("INGEST_POOL_CPU"),
            pool_memory=get("INGEST_POOL_MEMORY"),
            lease_seconds=max(3.0, float(get("INGEST_LEASE_SECONDS"))),
            failed_pod_retention_seconds=float(get("INGEST_FAILED_POD_RETENTION_SECONDS")),
            upload_stall_seconds=int(get("INGEST_UPLOAD_STALL_SECONDS")),
            upload_expiry_seconds=int(get("INGEST_UPLOAD_EXPIRY_SECONDS")),
            start_timeout_seconds=int(get("INGEST_START_TIMEOUT_SECONDS")),
            staged_retention_seconds=float(get("INGEST_STAGED_RETENTION_SECONDS")),
            job_retention_days=float(get("INGEST_JOB_RETENTION_DAYS")),
            state_cache_finished=max(0, int(get("INGEST_STATE_CACHE_FINISHED"))),
            leader_lease_seconds=max(2.0, float(get("INGEST_LEADER_LEASE_SECONDS"))),
            policy_url=get("POLICY_INGEST_URL"),
            metadata_url=get("METADATA_INGEST_URL"),
            auth_tokens_file=get("INGEST_AUTH_TOKENS_FILE"),
            auth_header=get("INGEST_AUTH_HEADER"),
            admin_users=frozenset(user.strip() for user in get("INGEST_ADMIN_USERS").split(",") if user.strip()),
            auth_trusted_proxies=_list(get("INGEST_AUTH_TRUSTED_PROXIES")),
            auth_oidc_issuer=get("INGEST_AUTH_OIDC_ISSUER").rstrip("/"),
            auth_oidc_audience=get("INGEST_AUTH_OIDC_AUDIENCE"),
            auth_oidc_user_claim=get("INGEST_AUTH_OIDC_USER_CLAIM"),
            log_level=get("INGEST_LOG_LEVEL").upper(),
            log_format="json" if get("INGEST_LOG_FORMAT").strip().lower() == "json" else "text",
            operator_metrics_port=int(get("INGEST_OPERATOR_METRICS_PORT")),
        )

    def __post_init__(self) -> None:
        # A bad template is refused at start-up, by every component, not at the first job.
        check_key_template(self.archive_key_template)
        check_metadata_key_template(self.metadata_key_template)

    def worker_environment(self) -> dict[str, str]:
        """The settings a worker Pod needs, minus credentials (those come from `worker_secret`)."""
        secret = {"INGEST_S3_ACCESS_KEY", "INGEST_S3_SECRET_KEY"}
        return {
            var.name: os.environ.get(var.name, var.default)
            for var in ENV
            if var.name not in secret and not var.name.startswith(("INGEST_API_", "INGEST_WORKER_", "INGEST_AUTH_", "INGEST_OPERATOR_", "INGEST_ADMIN_"))
        } | {"INGEST_NAMESPACE": self.namespace, "INGEST_WORKER_ATTEMPTS": str(self.worker_attempts),
             "INGEST_WORKER_DEADLINE_SECONDS": str(self.worker_deadline_seconds)}


def bundle_limits(settings: Settings) -> Limits:
    """The bundle limits this deployment enforces (the API while streaming, the worker after)."""
    return dataclasses.replace(
        DEFAULT_LIMITS, max_members=settings.max_members, max_metadata_bytes=settings.max_metadata_bytes,
        max_total_bytes=settings.max_body_bytes, max_listed_problems=settings.max_listed_problems,
    )
