"""Who called what: the last N requests verbatim, and an aggregate over the whole run.

Tests and the RBAC work read this to learn which verbs each identity (the bearer token is the
user name) really uses, so the Helm chart's Roles can be derived from observed traffic. The raw
log is a bounded ``deque`` and the aggregate is a ``Counter`` keyed by (user, verb, group,
resource, subresource) - a set bounded by the API's surface - so neither grows with run time and
recording costs O(1) per request.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
from typing import Any

DEFAULT_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Entry:
    time: str
    user: str
    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    userAgent: str
    code: int
    path: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RequestLog:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._recent: collections.deque[Entry] = collections.deque(maxlen=size)
        self._usage: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()

    def record(self, *, user: str, verb: str, group: str = "", version: str = "",
               resource: str = "", subresource: str = "", namespace: str = "", name: str = "",
               user_agent: str = "", code: int, path: str = "") -> None:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        self._recent.append(Entry(stamp, user, verb, group, version, resource, subresource,
                                  namespace, name, user_agent, code, path))
        if resource:
            self._usage[(user, verb, group, resource, subresource)] += 1

    def clear(self) -> None:
        self._recent.clear()
        self._usage.clear()

    def usage_rows(self) -> list[list[Any]]:
        """The aggregate as rows, for keeping it across a restart (see `restore_usage`)."""
        return [[*key, count] for key, count in sorted(self._usage.items())]

    def restore_usage(self, rows: list[list[Any]]) -> None:
        """The aggregate survives restarts, so "what did each component use" covers a whole run."""
        for *key, count in rows:
            self._usage[tuple(key)] += int(count)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [e.as_dict() for e in self._recent],
            "usage": [
                {"user": u, "verb": v, "group": g, "resource": r, "subresource": s, "count": n}
                for (u, v, g, r, s), n in sorted(self._usage.items())
            ],
        }
