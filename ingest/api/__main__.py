"""`python -m ingest.api`: serve the API with uvicorn."""
from __future__ import annotations

import sys

import uvicorn

from ingest.api.app import create_app
from ingest.api.auth import AuthConfigError
from ingest.config import Settings
from ingest.logs import setup_logging
from ingest.memory import bound_malloc


def main() -> None:
    bound_malloc()
    settings = Settings.from_env()
    setup_logging(settings)
    try:
        app = create_app(settings)
    except AuthConfigError as error:
        sys.exit(f"ingest API: refusing to start: {error}")
    uvicorn.run(
        app, host=settings.api_host, port=settings.api_port,
        log_level=settings.log_level.lower(), access_log=False, log_config=None, timeout_graceful_shutdown=10,
        # The client address is the socket peer, always: with proxy headers on, uvicorn would take
        # it from X-Forwarded-For (sent by anyone) and the trusted-proxy check would be forgeable.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
