"""A local S3 server for the local stack and the tests: Ceph's RADOS Gateway, run as a one-node cluster.

Why RGW: production talks to MinIO (its Helm chart or an existing endpoint), but no MinIO server
binary ships in PyPI, npm or Debian, the only registries our machines reach. Of the S3 servers
that do ship there, RGW (Debian 12's ``radosgw`` 16.2) was the only one that passed every check
the service relies on: real SigV4 (a wrong key gets 403), presigned-URL expiry and tampering,
multipart uploads, DeleteObjects, ListObjectsV2 past 1,000 keys, odd key names, data kept across
restarts. moto keeps objects in memory and accepts any credentials; nanio mangles some key names.
See ``shared/notes/object-store.md`` for the measurements.

How: nothing is installed system-wide. :func:`ensure_installed` downloads the Debian packages
(``apt-get download``) once into a cache outside the repository and unpacks them (``dpkg -x``)
into one folder. :class:`ObjectStore` runs one monitor, one BlueStore OSD on a sparse file and one
gateway, with every file they write (config, data, logs, admin sockets, pid files) under its
``data_dir``; the daemons fork, and are stopped by the pids in their pid files.

The modules, one mechanism each: ``packages`` (download and unpack, once per machine),
``cluster`` (the three daemons' lifecycle), ``cephconf`` (their configuration file),
``processes`` (ports, liveness, stopping by pid), ``endpoint`` (what a client connects to) and
``__main__`` (``python -m ingest.local.objectstore up|status|down|ceph``, to run a store by hand).

If ``INGEST_S3_ENDPOINT`` is set, the local stack uses that endpoint and starts no store: see
:func:`external_endpoint`.
"""
from __future__ import annotations

from .cluster import DEFAULT_BLOCK_SIZE, GIB, ObjectStore, parse_size
from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, REGION, external_endpoint
from .errors import DaemonExited, ObjectStoreError
from .packages import ensure_installed
from .processes import free_port

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_SECRET_KEY",
    "GIB",
    "REGION",
    "DaemonExited",
    "ObjectStore",
    "ObjectStoreError",
    "ensure_installed",
    "external_endpoint",
    "free_port",
    "parse_size",
]
