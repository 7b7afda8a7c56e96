"""`python -m ingest.operator`: run the kopf operator for the configured namespace.

`--standalone` (the default for one replica) needs no peering object; with `--peering NAME`,
several replicas elect one active operator through kopf's peering resource.
"""
from __future__ import annotations

import argparse

import kopf

from ingest.config import Settings
from ingest.logs import setup_logging
from ingest.operator import handlers  # noqa: F401  (registers the handlers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.operator", description=__doc__)
    parser.add_argument("--peering", help="kopf peering name for HA (default: standalone)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint")
    args = parser.parse_args()
    settings = Settings.from_env()
    setup_logging(settings)
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        namespaces=[settings.namespace],
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
