"""Mutated bundles over HTTP: whatever the bytes, the service answers, finishes, and rolls back.

Hypothesis starts from a valid bundle and breaks it the ways real bundles break and attackers
break them: flipped bytes, a truncated body, members spliced in, dropped, duplicated, renamed or
swapped, and metadata.txt values replaced by JSON of another type. The pure parser has its own
property tests (tests/bundle/); this suite checks the invariants that only the whole stack can
break: the API never answers 5xx, every job reaches `complete` (none is left stuck), and a FAILED
job leaves no object under `<job_id>/` in the archive.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from minio import Minio

from tests.integration.bundles import TRANSACTION, files_entry, tar_bytes
from tests.integration.helpers import archive_keys, wait_complete

pytestmark = pytest.mark.stack

FILES = {"run/a.txt": b"alpha\n", "run/b.bin": bytes(range(256)) * 3, "empty.txt": b""}
STATE_KEYS = {"job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"}
# Fields a Files or Transactions item has, plus one nobody expects.
FIELDS = ["destinationTable", "name", "subdir", "size", "hashtype", "hashsum", "mimetype", "value", "key", "source",
          "extra"]
NAMES = ["metadata.txt", "./metadata.txt", "data/run/a.txt", "data/run/b.bin", "data/empty.txt", "data/run",
         "/data/run/a.txt",
         "data/../run/a.txt", "data/ü.txt"]

# Any text tarfile can encode (no lone surrogates); NUL and control characters included.
member_names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["Files", "sha1", "md5", "data", "../..", "", "a.txt",
                                              "application/json"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def valid_parts() -> tuple[list[tuple[str, bytes]], list[Any]]:
    document: list[Any] = [dict(item) for item in TRANSACTION]
    for path, data in FILES.items():
        subdir, _, name = path.rpartition("/")
        document.append(files_entry(name, subdir, data))
    return [(f"data/{path}", data) for path, data in FILES.items()], document


@st.composite
def mutated_json(draw: st.DrawFn, document: list[Any]) -> list[Any] | Any:
    """The document with one to three items changed: a field set to any JSON, removed, or the item replaced."""
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(document, list) or not document:
            break
        index = draw(st.integers(0, len(document) - 1))
        action = draw(st.sampled_from(["set", "delete", "replace", "duplicate", "whole"]))
        item = document[index]
        if action == "set" and isinstance(item, dict):
            item[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif action == "delete" and isinstance(item, dict) and item:
            item.pop(draw(st.sampled_from(sorted(item))))
        elif action == "replace":
            document[index] = draw(json_values)
        elif action == "duplicate":
            document.insert(index, json.loads(json.dumps(item)))
        elif action == "whole":
            document = draw(json_values)
    return document


@st.composite
def spliced(draw: st.DrawFn, members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Members dropped, duplicated, renamed, swapped or inserted."""
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "duplicate", "rename", "swap", "insert", "reorder"]))
        index = draw(st.integers(0, len(members) - 1)) if members else 0
        if action == "drop" and members:
            members.pop(index)
        elif action == "duplicate" and members:
            members.insert(draw(st.integers(0, len(members))), members[index])
        elif action == "rename" and members:
            members[index] = (draw(st.sampled_from(NAMES) | member_names), members[index][1])
        elif action == "swap" and len(members) > 1:
            other = draw(st.integers(0, len(members) - 1))
            members[index], members[other] = (members[index][0],
                                              members[other][1]), (members[other][0], members[index][1])
        elif action == "insert":
            members.insert(index, (draw(st.sampled_from(NAMES)), draw(st.binary(max_size=600))))
        elif action == "reorder":
            members = draw(st.permutations(members))
    return members


@st.composite
def bundles(draw: st.DrawFn) -> bytes:
    """A valid bundle, mutated at the member and metadata level, then maybe at the byte level."""
    members, document = valid_parts()
    if draw(st.booleans()):
        document = draw(mutated_json(document))
    members = members + [("metadata.txt", json.dumps(document).encode())]
    if draw(st.booleans()):
        members = draw(spliced(members))
    body = tar_bytes(members)
    byte_level = draw(st.sampled_from(["none", "flip", "truncate"]))
    if byte_level == "flip" and body:
        mutable = bytearray(body)
        for _ in range(draw(st.integers(1, 8))):
            mutable[draw(st.integers(0, len(mutable) - 1))] ^= draw(st.integers(1, 255))
        body = bytes(mutable)
    elif byte_level == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    return body


def checked(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text, response.text
    return response


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=bundles())
def test_mutated_bundle_never_5xx_always_completes_and_failure_writes_nothing(api: httpx.Client, s3: Minio,
                                                                              body: bytes) -> None:
    response = checked(api.post("/upload", content=body, headers={"Content-Type": "application/octet-stream"}))
    event(f"HTTP {response.status_code}")
    if response.status_code != 200:
        return  # a 4xx refusal at the door is a valid answer; 5xx is the one that is not
    accepted = response.json()
    assert set(accepted) == STATE_KEYS
    final = wait_complete(api, accepted["job_id"])
    checked(api.get(f"/get_state/{accepted['job_id']}"))
    event(f"{final['state']} at {final['task']}")  # --hypothesis-show-statistics: which steps the mutations reach
    assert final["state"] in ("OK", "FAILED"), final
    if final["state"] == "FAILED":
        assert final["exception"] and "Traceback" not in final["exception"], final
        assert archive_keys(s3, final["job_id"]) == [], final
    else:
        assert (final["task"], final["task_percent"]) == ("ingest metadata", "100.0"), final
        assert f"{final['job_id']}.metadata.json" in archive_keys(s3, final["job_id"])


# Sources of every shape a hostile /move document might carry: paths with `..`, `//`, NUL, links
# in the making, our own buckets, other schemes, non-strings.
sources = st.one_of(
    st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=2),
    st.sampled_from(["s3://ingest-staging/bundles/1.tar", "s3://ingest-archive/1/a.txt", "s3://", "s3:///x",
                     "s3://ingest-shared/shared/",
                     "s3://ingest-shared/shared/../x", "file:///etc/passwd", "/etc/passwd", "relative", "", "/",
                     "//x"]),
    st.builds(lambda parts: "/" + "/".join(parts),
              st.lists(st.sampled_from(["..", ".", "", "move-root", "users", "alice", "a\0b", "ü"]), max_size=6)),
    st.text(max_size=40),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=sources, size=st.integers(-1, 2**64), job_id=st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str))
def test_hostile_move_sources_and_job_ids_are_answered_never_5xx(api: httpx.Client, s3: Minio, source: Any, size: int,
                                                                 job_id: str) -> None:
    entry = files_entry("x.txt", "fuzz", b"x", source=source, size=size)
    response = checked(api.post("/move", content=json.dumps(TRANSACTION + [entry]),
                                headers={"Content-Type": "application/json"}))
    event(f"/move {response.status_code}")
    if response.status_code == 200:
        final = wait_complete(api, response.json()["job_id"])
        assert final["state"] == "FAILED" and "Traceback" not in final["exception"], (
            final
        )  # no such file exists anywhere
        assert archive_keys(s3, final["job_id"]) == []
    # The path form percent-encoded, as any client would send it (httpx refuses raw control characters).
    for response in (api.get("/get_state", params={"job_id": job_id}), api.get(f"/get_state/{quote(job_id, safe='')}")):
        # 307: `/get_state/` redirects to `/get_state`; 404: a job_id with `/` or `?` names another path
        assert checked(response).status_code in (200, 307, 400, 404, 405), response.text
