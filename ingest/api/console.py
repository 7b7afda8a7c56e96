"""The web console's static files (`ingest/api/ui/`), served under /ui/ with a strict policy.

The files hold no data (the page reads the documented JSON endpoints with the user's token), so
they are served without authentication. The Content-Security-Policy lets the page load only its
own scripts and styles and talk only to this origin: an injected string can neither run script
nor send a token elsewhere, and the page cannot be framed (clickjacking of the admin buttons).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

DIRECTORY: Final = Path(__file__).parent / "ui"
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release's page is used at once
}


class ConsoleFiles(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=DIRECTORY, html=True)

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response
