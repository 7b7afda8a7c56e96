"""`python -m ingest.operator`: run the kopf operator for the configured namespace.

One replica runs standalone. With `--lease NAME`, several replicas elect one active operator
through a `coordination.k8s.io` Lease (ingest/operator/leader.py): the others wait as standbys and
start handling jobs only once they hold it; a replica that loses it exits.
"""
from __future__ import annotations

import argparse

import kopf

from ingest import kube
from ingest.config import Settings
from ingest.logs import setup_logging
from ingest.operator import (
    handlers,  # noqa: F401  (registers the handlers)
    leader,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.operator", description=__doc__)
    parser.add_argument("--lease",
                        help="Lease name for several replicas: act only while holding it (default: standalone)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint")
    args = parser.parse_args()
    settings = Settings.from_env()
    setup_logging(settings)
    if args.lease:
        # No client retries: a renewal must fail within its own timeout, not after three.
        leader.lead(kube.api_client(pool_size=2, retries=0), namespace=settings.namespace, name=args.lease,
                    identity=kube.IDENTITY, lease_seconds=settings.leader_lease_seconds,
                    liveness=args.liveness)
    kopf.run(
        standalone=True,
        namespaces=[settings.namespace],
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
