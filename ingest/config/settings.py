"""Every setting of the service: one declaration each, read from environment variables.

Each component (API, operator, worker, IngestCMD) builds one `Settings` at start-up with
`Settings.from_env()`; nothing else reads the environment. A field's `setting(...)` is the only
place a setting is described (see `ingest.config.declare`): the README's configuration table
(`python -m ingest config-table`) and the chart's ConfigMap test are made from these declarations.
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
from ingest.config.declare import Setting, declared, read, setting

_SA_NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MiB: Final = 1024 * 1024
DAY: Final = 24 * 3600
PORT: Final = {"minimum": 0, "maximum": 65535}


def _namespace(configured: str) -> str:
    if configured:
        return configured
    try:
        return _SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _key_template(template: str) -> str:
    check_key_template(template)
    return template


def _metadata_key_template(template: str) -> str:
    check_metadata_key_template(template)
    return template


@dataclasses.dataclass(frozen=True)
class Settings:
    namespace: str = setting(
        "INGEST_NAMESPACE", "", "Namespace of the IngestJobs (default: the Pod's own namespace, else `default`).",
        finish=_namespace)
    s3_endpoint: str = setting(
        "INGEST_S3_ENDPOINT", "127.0.0.1:9000", "Object store `host:port` (MinIO or any S3 server).")
    s3_access_key: str = setting("INGEST_S3_ACCESS_KEY", "", "Object store access key.")
    s3_secret_key: str = setting("INGEST_S3_SECRET_KEY", "", "Object store secret key.")
    s3_secure: bool = setting("INGEST_S3_SECURE", False, "Use HTTPS to the object store.")
    s3_region: str = setting("INGEST_S3_REGION", "us-east-1", "Object store region.")
    s3_timeout_seconds: float = setting(
        "INGEST_S3_TIMEOUT_SECONDS", 60.0,
        "Longest wait for an object store answer (a full or stuck store fails jobs, naming it).", minimum=1)
    staging_bucket: str = setting(
        "INGEST_STAGING_BUCKET", "ingest-staging", "Bucket for uploaded bundles and move documents.")
    archive_bucket: str = setting(
        "INGEST_ARCHIVE_BUCKET", "ingest-archive", "Bucket for ingested files and metadata documents.")
    archive_key_template: str = setting(
        "INGEST_ARCHIVE_KEY_TEMPLATE", DEFAULT_KEY_TEMPLATE,
        "Archive key of a file; fields job_id (required), file_id, subdir, name, path.", finish=_key_template)
    metadata_key_template: str = setting(
        "INGEST_METADATA_KEY_TEMPLATE", DEFAULT_METADATA_KEY_TEMPLATE,
        "Archive key of a job's final metadata document (field job_id, required); outside the keys files can have.",
        finish=_metadata_key_template)
    part_size: int = setting(
        "INGEST_PART_SIZE", 16 * MiB, "Multipart part size in bytes (staging uploads and large files).",
        minimum=5 * MiB)  # S3's smallest part
    max_body_bytes: int = setting(
        "INGEST_MAX_BODY_BYTES", 1024 * 1024 * MiB, "Largest accepted request body (413 above it).", minimum=0)
    max_members: int = setting("INGEST_MAX_MEMBERS", 1000000, "Most tar members a bundle may hold.", minimum=0)
    max_metadata_bytes: int = setting(
        "INGEST_MAX_METADATA_BYTES", 64 * MiB, "Largest accepted metadata.txt (or /move document).", minimum=0)
    max_listed_problems: int = setting(
        "INGEST_MAX_LISTED_PROBLEMS", DEFAULT_LIMITS.max_listed_problems,
        "Files a failed job's exception lists one line each (and status.problems holds); all are counted.", minimum=1)
    upload_concurrency: int = setting(
        "INGEST_UPLOAD_CONCURRENCY", 16, "Files (or batches of small files) a worker uploads in parallel.", minimum=1)
    move_roots: tuple[str, ...] = setting(
        "INGEST_MOVE_ROOTS", (),
        "Colon-separated folders /move may take files from (mounted into worker Pods); a root containing `{user}` "
        "is that user's (with authentication on, a user moves only from their own roots); empty: none.",
        separator=":")
    move_pvc: str = setting(
        "INGEST_MOVE_PVC", "", "PersistentVolumeClaim mounted into worker Pods for /move sources; empty: none.")
    move_mount: str = setting(
        "INGEST_MOVE_MOUNT", "/move", "Where worker Pods mount INGEST_MOVE_PVC (put it in INGEST_MOVE_ROOTS).")
    move_remove_sources: bool = setting(
        "INGEST_MOVE_REMOVE_SOURCES", True, "After a successful /move, delete filesystem sources (as upstream).")
    move_remove_s3_sources: bool = setting(
        "INGEST_MOVE_REMOVE_S3_SOURCES", False, "After a successful /move, delete s3:// sources.")
    move_s3_sources: tuple[str, ...] = setting(
        "INGEST_MOVE_S3_SOURCES", (),
        "Comma-separated `bucket` or `bucket/prefix` entries /move may read s3:// sources from "
        "(never the staging or archive bucket); empty: no s3:// sources.")
    job_id_block: int = setting("INGEST_JOB_ID_BLOCK", 10, "Job ids an API replica reserves at a time.", minimum=1)
    api_host: str = setting("INGEST_API_HOST", "0.0.0.0", "Address the API listens on.")
    api_port: int = setting("INGEST_API_PORT", 8066, "Port the API listens on (Pacifica's).", **PORT)
    api_memory_budget_bytes: int = setting(
        "INGEST_API_MEMORY_BUDGET_BYTES", 192 * MiB,
        "Bytes an API replica may hold for request bodies at once (staging buffers, metadata.txt, /move documents "
        "and their parsing); past it a request gets 503 with Retry-After.", minimum=0)
    worker_image: str = setting(
        "INGEST_WORKER_IMAGE", "pacifica-ingest-k8s:0.1.0", "Image of worker Pods (the service's own image).")
    worker_service_account: str = setting(
        "INGEST_WORKER_SERVICE_ACCOUNT", "ingest-worker", "ServiceAccount worker Pods run as.")
    worker_secret: str = setting(
        "INGEST_WORKER_SECRET", "ingest-s3",
        "Secret whose keys become worker environment variables (object store credentials).")
    worker_cpu: str = setting("INGEST_WORKER_CPU", "500m", "CPU request of a worker Pod.")
    worker_memory: str = setting("INGEST_WORKER_MEMORY", "256Mi", "Memory request of a worker Pod.")
    worker_cpu_limit: str = setting("INGEST_WORKER_CPU_LIMIT", "2", "CPU limit of a worker Pod.")
    worker_memory_limit: str = setting("INGEST_WORKER_MEMORY_LIMIT", "512Mi", "Memory limit of a worker Pod.")
    worker_deadline_seconds: int = setting(
        "INGEST_WORKER_DEADLINE_SECONDS", 3600,
        "activeDeadlineSeconds of a worker Pod: a running job past it fails.", minimum=1)
    worker_attempts: int = setting(
        "INGEST_WORKER_ATTEMPTS", 3,
        "Worker Pods tried for a job before it fails (bundle errors are never retried).", minimum=1)
    worker_mode: str = setting(
        "INGEST_WORKER_MODE", "pool",
        "`pool`: bundles up to INGEST_POOL_MAX_BUNDLE_BYTES go to warm pool workers, larger ones get a Pod each; "
        "`pod`: one worker Pod per job.", choices=("pool", "pod"))
    pool_min: int = setting(
        "INGEST_POOL_MIN", 1, "Pool worker Pods kept warm when no job waits (pool mode).", minimum=0)
    pool_max: int = setting(
        "INGEST_POOL_MAX", 4, "Most pool worker Pods the operator runs, however many jobs wait.", minimum=1)
    pool_max_bundle_bytes: int = setting(
        "INGEST_POOL_MAX_BUNDLE_BYTES", 16 * MiB,
        "Largest bundle a pool worker takes (read whole, in memory); a larger one gets its own worker Pod.", minimum=0)
    pool_jobs_per_worker: int = setting(
        "INGEST_POOL_JOBS_PER_WORKER", 4, "Jobs one pool worker runs at the same time.", minimum=1)
    pool_cpu: str = setting(
        "INGEST_POOL_CPU", "250m",
        "CPU request of a pool worker Pod (limits: INGEST_WORKER_CPU_LIMIT, INGEST_WORKER_MEMORY_LIMIT).")
    pool_memory: str = setting("INGEST_POOL_MEMORY", "256Mi", "Memory request of a pool worker Pod.")
    lease_seconds: float = setting(
        "INGEST_LEASE_SECONDS", 30.0,
        "A worker proves it still owns its job every third of this; one whose Pod vanished is trusted dead only "
        "after it.", minimum=3)
    failed_pod_retention_seconds: float = setting(
        "INGEST_FAILED_POD_RETENTION_SECONDS", float(DAY),
        "A failed job's worker Pods stay this long (for `kubectl logs`); a succeeded job's go at once.", minimum=0)
    upload_stall_seconds: int = setting(
        "INGEST_UPLOAD_STALL_SECONDS", 300, "An upload that makes no progress this long fails.", minimum=1)
    upload_expiry_seconds: int = setting(
        "INGEST_UPLOAD_EXPIRY_SECONDS", DAY,
        "A resumable (tus) upload with no PATCH this long fails and its parts are removed.", minimum=1)
    start_timeout_seconds: int = setting(
        "INGEST_START_TIMEOUT_SECONDS", 600, "A staged job whose worker has not started this long fails.", minimum=1)
    staged_retention_seconds: float = setting(
        "INGEST_STAGED_RETENTION_SECONDS", float(7 * DAY), "How long a failed job's staged bundle is kept for a retry.",
        minimum=0)
    job_retention_days: float = setting(
        "INGEST_JOB_RETENTION_DAYS", 30.0,
        "Finished IngestJobs are deleted after this many days (0: kept forever).", minimum=0)
    state_cache_finished: int = setting(
        "INGEST_STATE_CACHE_FINISHED", 10000,
        "Finished jobs an API replica keeps in its get_state cache; older ones are read from the Kubernetes API "
        "when asked.", minimum=0)
    leader_lease_seconds: float = setting(
        "INGEST_LEADER_LEASE_SECONDS", 15.0,
        "Operator replicas: how long the active one's Lease holds; a standby takes over within this after the "
        "active one stops renewing.", minimum=2)
    policy_url: str = setting(
        "POLICY_INGEST_URL", "", "Pacifica policy service `.../ingest` endpoint; empty: built-in validation only.")
    metadata_url: str = setting(
        "METADATA_INGEST_URL", "",
        "Pacifica metadata service `.../ingest` endpoint; empty: the archive keeps the document.")
    auth_tokens_file: str = setting(
        "INGEST_AUTH_TOKENS_FILE", "",
        "File of `token user` lines (or a JSON object): bearer tokens the API accepts; empty: no tokens.")
    auth_header: str = setting(
        "INGEST_AUTH_HEADER", "",
        "Header a trusted proxy sets to the authenticated user (e.g. X-Http-Authed-User); empty: none.")
    admin_users: frozenset[str] = setting(
        "INGEST_ADMIN_USERS", frozenset(),
        "Comma-separated users who may fail, cancel and retry any job from the API and console and see every job; "
        "`*`: everyone (e.g. with authentication off); empty: nobody.")
    auth_trusted_proxies: tuple[str, ...] = setting(
        "INGEST_AUTH_TRUSTED_PROXIES", (),
        "Comma-separated CIDRs of the proxies whose INGEST_AUTH_HEADER is believed "
        "(the socket peer's address; X-Forwarded-For is never read); required with INGEST_AUTH_HEADER.")
    auth_oidc_issuer: str = setting(
        "INGEST_AUTH_OIDC_ISSUER", "",
        "OIDC issuer URL: bearer JWTs it signed are accepted (keys from its JWKS); empty: no OIDC.",
        finish=lambda url: url.rstrip("/"))
    auth_oidc_audience: str = setting(
        "INGEST_AUTH_OIDC_AUDIENCE", "",
        "The audience (`aud`) an OIDC token must carry; required with INGEST_AUTH_OIDC_ISSUER.")
    auth_oidc_user_claim: str = setting(
        "INGEST_AUTH_OIDC_USER_CLAIM", "sub", "The OIDC token claim that names the user (e.g. preferred_username).")
    log_level: str = setting(
        "INGEST_LOG_LEVEL", "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    log_format: str = setting(
        "INGEST_LOG_FORMAT", "text",
        "`text` (one line per event, `job_id=N` on lines about a job) or `json` (one JSON object per line).",
        choices=("text", "json"))
    operator_metrics_port: int = setting(
        "INGEST_OPERATOR_METRICS_PORT", 9090, "Port of the operator's Prometheus `/metrics` endpoint (0: none).",
        **PORT)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings `environ` (default: the process's) asks for; ConfigError names a bad variable."""
        values = read(SETTINGS, os.environ if environ is None else environ)
        # The pool never has fewer places than the Pods it keeps warm.
        values["pool_max"] = max(values["pool_max"], values["pool_min"])
        return cls(**values)

    def worker_environment(self) -> dict[str, str]:
        """The settings a worker Pod needs, minus credentials (those come from `worker_secret`)."""
        secret = {"INGEST_S3_ACCESS_KEY", "INGEST_S3_SECRET_KEY"}
        not_the_workers = ("INGEST_API_", "INGEST_WORKER_", "INGEST_AUTH_", "INGEST_OPERATOR_", "INGEST_ADMIN_")
        return {
            var.name: os.environ.get(var.name, var.default)
            for var in ENV
            if var.name not in secret and not var.name.startswith(not_the_workers)
        } | {"INGEST_NAMESPACE": self.namespace, "INGEST_WORKER_ATTEMPTS": str(self.worker_attempts),
             "INGEST_WORKER_DEADLINE_SECONDS": str(self.worker_deadline_seconds)}


SETTINGS: Final[dict[str, Setting]] = declared(dataclasses.fields(Settings))


@dataclasses.dataclass(frozen=True)
class Var:
    """One environment variable as the README documents it: its name, default text and meaning."""

    name: str
    default: str
    help: str


ENV: Final[tuple[Var, ...]] = tuple(Var(spec.env, spec.text, spec.help) for spec in SETTINGS.values())


def bundle_limits(settings: Settings) -> Limits:
    """The bundle limits this deployment enforces (the API while streaming, the worker after)."""
    return dataclasses.replace(
        DEFAULT_LIMITS, max_members=settings.max_members, max_metadata_bytes=settings.max_metadata_bytes,
        max_total_bytes=settings.max_body_bytes, max_listed_problems=settings.max_listed_problems,
    )
