"""Pacifica's optional peers: the policy service (asked first) and the metadata service (told last).

Both take the metadata document as JSON, as upstream sends it. A refusal is the bundle's problem
(FAILED at the step, never retried); an unreachable peer is retried with backoff before it counts.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from ingest import jobs
from ingest.bundle import BundleError

ATTEMPTS = 5


def _send(method: str, url: str, document: Any, user: str | None, task: str, peer: str) -> None:
    data = json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    if user:
        headers["X-Http-Authed-User"] = user
    for attempt in range(ATTEMPTS):
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:500]
            if error.code < 500:
                raise BundleError(task, f"the {peer} service refused the metadata ({error.code}): {detail}") from None
            reason = f"{error.code}: {detail}"
        except (urllib.error.URLError, OSError) as error:
            reason = str(getattr(error, "reason", error))
        if attempt + 1 < ATTEMPTS:
            time.sleep(0.5 * 2**attempt)
    raise BundleError(task, f"the {peer} service at {url} could not be reached after {ATTEMPTS} attempts: {reason}")


def check_policy(url: str, document: Any, user: str | None) -> None:
    _send("POST", url, document, user, jobs.POLICY_VALIDATION, "policy")


def ingest_metadata(url: str, document: Any, user: str | None) -> None:
    _send("PUT", url, document, user, jobs.INGEST_METADATA, "metadata")
