"""`python -m ingest.api`: serve the API with uvicorn."""
from __future__ import annotations

import uvicorn

from ingest.api.app import create_app
from ingest.config import Settings
from ingest.logs import setup_logging
from ingest.memory import bound_malloc


def main() -> None:
    bound_malloc()
    settings = Settings.from_env()
    setup_logging(settings)
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port,
        log_level=settings.log_level.lower(), access_log=False, log_config=None, timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
