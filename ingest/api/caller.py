"""Who is asking, and what they may see and do: the console's and job list's access rule.

Authentication (`ingest.api.auth`) names the user and puts it in the request scope; this module
decides from that name alone. With authentication on, a user reads only the jobs that record
them as their user (`spec.user`), and an administrator (`INGEST_ADMIN_USERS`) reads every job and
may fail, cancel and retry it. With authentication off there are no users: everyone reads
everything, and only `INGEST_ADMIN_USERS=*` lets anyone act, because an unauthenticated "admin"
is a choice an operator makes on purpose (a laptop's `make run`), never a default.

A job the caller may not read is answered exactly like a job that does not exist (404), so the
answer never says whether another user's job id is taken.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from starlette.requests import Request

from ingest.config import Settings

EVERYONE: Final = "*"


@dataclasses.dataclass(frozen=True)
class Caller:
    user: str | None
    authenticated: bool  # the deployment authenticates requests (tokens, OIDC or a proxy's header)
    admin: bool

    @property
    def restricted(self) -> bool:
        """Whether this caller reads only their own jobs."""
        return self.authenticated and not self.admin

    def may_read(self, job: Mapping[str, Any]) -> bool:
        if not self.authenticated or self.admin:
            return True
        return bool(self.user) and (job.get("spec") or {}).get("user") == self.user


def caller_of(request: Request, settings: Settings) -> Caller:
    authenticated = bool(settings.auth_tokens_file or settings.auth_header or settings.auth_oidc_issuer)
    user = request.scope.get("ingest.user") if authenticated else None
    admin = EVERYONE in settings.admin_users or (user is not None and user in settings.admin_users)
    return Caller(user=user, authenticated=authenticated, admin=admin)
