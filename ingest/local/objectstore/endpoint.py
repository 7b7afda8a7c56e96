"""What an S3 client connects to: the local store's address and keys, or an external endpoint.

Both come as the keyword arguments of ``minio.Minio``, so the launcher hands either to the
components the same way; ``INGEST_S3_ENDPOINT`` set means the local stack starts no store.
"""
from __future__ import annotations

import os
import re

REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "ingest-local"
DEFAULT_SECRET_KEY = "ingest-local-secret-key"


def external_endpoint() -> dict[str, object] | None:
    """The S3 endpoint named by ``INGEST_S3_ENDPOINT``, or None when the local store should run.

    Returns ``{"endpoint", "access_key", "secret_key", "secure", "region"}`` (the keyword
    arguments of ``minio.Minio``), read from ``INGEST_S3_ENDPOINT``, ``INGEST_S3_ACCESS_KEY``,
    ``INGEST_S3_SECRET_KEY`` and ``INGEST_S3_SECURE`` (default false). An ``http://`` or
    ``https://`` prefix on the endpoint is stripped and, unless ``INGEST_S3_SECURE`` is set,
    decides ``secure``.
    """
    endpoint = os.environ.get("INGEST_S3_ENDPOINT", "").strip()
    if not endpoint:
        return None
    secure = False
    scheme = re.match(r"(?i)(https?)://", endpoint)
    if scheme:
        secure = scheme[1].lower() == "https"
        endpoint = endpoint[scheme.end() :]
    endpoint = endpoint.rstrip("/")
    flag = os.environ.get("INGEST_S3_SECURE")
    if flag is not None and flag.strip():
        secure = flag.strip().lower() in ("1", "true", "yes", "on")
    return {
        "endpoint": endpoint,
        "access_key": os.environ.get("INGEST_S3_ACCESS_KEY", ""),
        "secret_key": os.environ.get("INGEST_S3_SECRET_KEY", ""),
        "secure": secure,
        "region": REGION,
    }
