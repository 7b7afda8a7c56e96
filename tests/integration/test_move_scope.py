"""Two users, one service: by no /move request can alice obtain a byte of what bob owns.

An API replica with bearer tokens for alice and bob, whose operator (mistakenly) lists the
service's own buckets in INGEST_MOVE_S3_SOURCES. Bob owns a staged bundle and its index (a
failed upload keeps them), a staged /move document (a failed move keeps it), an archived file,
and a file in his own /move root. Alice tries every way to name them: s3:// with the right and
the wrong size and digest, his path, `..` from her root, a link in her root to his file or
folder, a file swapped for a link. Every refusal is the same sentence (nothing about size,
digest or existence), and at the end all of bob's things are where they were, byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from minio import Minio

from ingest import jobs
from ingest.kube import JobStore, api_client
from ingest.local.launcher import Stack
from tests.integration.bundles import TRANSACTION, bundle, files_entry
from tests.integration.helpers import archive_keys, wait_complete, wait_for
from tests.integration.replica import api_replica

pytestmark = pytest.mark.stack
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}
REFUSED = "cannot be moved: it does not exist, or it is not a file this service may read for you"


@pytest.fixture(scope="module")
def replica(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("scope")
    tokens = folder / "tokens"
    tokens.write_text("".join(f"{token} {user}\n" for user, token in TOKENS.items()))
    env = {"INGEST_AUTH_TOKENS_FILE": str(tokens),
           "INGEST_MOVE_S3_SOURCES": "ingest-staging,ingest-archive/,ingest-shared/shared"}
    with api_replica(stack, folder, env) as url:
        yield url


def client(url: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=60)


def post_move(api: httpx.Client, entries: list[dict[str, Any]]) -> httpx.Response:
    return api.post("/move", content=json.dumps(TRANSACTION + entries), headers={"Content-Type": "application/json"})


def read_object(s3: Minio, bucket: str, key: str) -> bytes:
    response = s3.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


@pytest.fixture(scope="module")
def bobs(replica: str, s3: Minio, user_root: Callable[[str], Path]) -> dict[tuple[str, str], bytes]:
    """Everything bob owns: (bucket or 'fs', key or path) -> bytes."""
    owned: dict[tuple[str, str], bytes] = {}
    with client(replica, "bob") as bob:
        good, _ = bundle({"bob/secret.txt": b"bob's archived secret"})
        job = bob.post("/upload", content=good).json()["job_id"]
        assert wait_complete(bob, job)["state"] == "OK"
        owned[("ingest-archive", f"{job}/bob/secret.txt")] = b"bob's archived secret"
        bad, _ = bundle({"bob/staged.txt": b"bob's staged secret"},
                        metadata=TRANSACTION + [files_entry("staged.txt", "bob", b"something else")])
        job = bob.post("/upload", content=bad).json()["job_id"]
        assert wait_complete(bob, job)["state"] == "FAILED"
        owned[("ingest-staging", jobs.staged_bundle_key(job))] = read_object(s3, "ingest-staging",
                                                                             jobs.staged_bundle_key(job))
        # A bundle small enough for the worker pool is read whole: it has no index to steal.
        if any(item.object_name == jobs.staged_index_key(job)
               for item in s3.list_objects("ingest-staging", prefix=jobs.staged_index_key(job))):
            owned[("ingest-staging", jobs.staged_index_key(job))] = read_object(s3, "ingest-staging",
                                                                                jobs.staged_index_key(job))
        secret = user_root("bob") / "secret" / "data.txt"
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_bytes(b"bob's file on disk")
        owned[("fs", str(secret))] = secret.read_bytes()
        missing = files_entry("x.txt", "bob", b"x", source=str(user_root("bob") / "nowhere.txt"))
        job = post_move(bob, [missing]).json()["job_id"]
        assert wait_complete(bob, job)["state"] == "FAILED"
        owned[("ingest-staging", jobs.staged_move_key(job))] = read_object(s3, "ingest-staging",
                                                                           jobs.staged_move_key(job))
    return owned


def entry_for(source: str, data: bytes, *, size: int | None = None) -> dict[str, Any]:
    return files_entry("stolen.bin", "alice", data, source=source, **({"size": size} if size is not None else {}))


def assert_untouched(s3: Minio, owned: dict[tuple[str, str], bytes]) -> None:
    for (where, key), data in owned.items():
        actual = Path(key).read_bytes() if where == "fs" else read_object(s3, where, key)
        assert actual == data, f"{where} {key} changed"


def test_bobs_objects_and_paths_are_refused_at_once(replica: str, bobs: dict[tuple[str, str], bytes], s3: Minio,
                                                    job_store: JobStore, user_root: Callable[[str], Path]) -> None:
    before = {job["metadata"]["name"] for job in job_store.list()}
    attempts = []
    for (where, key), data in bobs.items():
        source = key if where == "fs" else f"s3://{where}/{key}"
        attempts += [(source, entry_for(source, data)), (source, entry_for(source, data, size=len(data) + 1))]
    sneaky = f"{user_root('alice')}/../bob/secret/data.txt"
    attempts.append((sneaky, entry_for(sneaky, b"bob's file on disk")))
    with client(replica, "alice") as alice:
        for source, entry in attempts:
            response = post_move(alice, [entry])
            assert response.status_code == 400, (source, response.text)
            message = response.json()["message"]
            assert message.endswith(f"source {source!r} {REFUSED}"), message
            for data in [bobs.get(("fs", source)), *bobs.values()]:
                if data:
                    assert str(len(data)) not in message.replace(source,
                                                                 "") and hashlib.sha1(data).hexdigest() not in message
    assert {job["metadata"]["name"] for job in job_store.list()} == before, "no job for a refused source"
    assert_untouched(s3, bobs)


@pytest.mark.parametrize("trick", ["link to his file", "link to his folder", "absent"])
def test_links_in_alices_root_are_not_followed(replica: str, bobs: dict[tuple[str, str], bytes], s3: Minio,
                                              user_root: Callable[[str], Path], trick: str) -> None:
    secret = next(Path(key) for where, key in bobs if where == "fs")
    root = user_root("alice") / trick.replace(" ", "-")
    root.mkdir(exist_ok=True)
    if trick == "link to his file":
        source = root / "data.txt"
        source.symlink_to(secret)
    elif trick == "link to his folder":
        (root / "bobs").symlink_to(secret.parent)
        source = root / "bobs" / "data.txt"
    else:
        source = root / "data.txt"
    with client(replica, "alice") as alice:
        response = post_move(alice, [entry_for(str(source), secret.read_bytes())])
        assert response.status_code == 200, response.text
        final = wait_complete(alice, response.json()["job_id"])
    assert (final["state"], final["task"]) == ("FAILED", "move files"), final
    assert final["exception"].endswith(f"source {str(source)!r} {REFUSED}"), final
    assert archive_keys(s3, final["job_id"]) == []
    assert_untouched(s3, bobs)


def test_alice_moves_from_her_own_root(replica: str, s3: Minio, user_root: Callable[[str], Path]) -> None:
    source = user_root("alice") / "own" / "mine.txt"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"alice's own data")
    with client(replica, "alice") as alice:
        response = post_move(alice, [files_entry("mine.txt", "own", b"alice's own data", source=str(source))])
        assert response.status_code == 200, response.text
        final = wait_complete(alice, response.json()["job_id"])
    assert final["state"] == "OK", final
    assert read_object(s3, "ingest-archive", f"{final['job_id']}/own/mine.txt") == b"alice's own data"
    wait_for(lambda: not source.exists(), timeout=30, what="alice's moved source to be removed")


def test_shared_roots_are_nobodys_with_authentication_on(replica: str, move_root: Path) -> None:
    source = move_root / "shared-with-auth.txt"
    source.write_bytes(b"shared")
    with client(replica, "alice") as alice:
        response = post_move(alice, [files_entry("s.txt", "shared", b"shared", source=str(source))])
    assert response.status_code == 400 and REFUSED in response.json()["message"]
    assert source.read_bytes() == b"shared"


def test_a_source_changed_after_the_copy_is_left_with_an_event(api: httpx.Client, stack: Stack,
                                                               move_root: Path) -> None:
    """A file whose mtime keeps changing is copied (its bytes stay right) but never removed."""
    source = move_root / "changing" / "data.bin"
    source.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(4 * 1024 * 1024)
    source.write_bytes(data)
    stop = threading.Event()

    def touch() -> None:
        stamp = 1_700_000_000_000_000_000
        while not stop.is_set():
            stamp += 1_000_000
            os.utime(source, ns=(stamp, stamp))
            stop.wait(0.005)

    toucher = threading.Thread(target=touch, daemon=True)
    toucher.start()
    try:
        response = api.post("/move",
                            content=json.dumps(TRANSACTION + [files_entry("data.bin", "changing", data,
                                                                          source=str(source))]),
                            headers={"Content-Type": "application/json"})
        final = wait_complete(api, response.json()["job_id"])
    finally:
        stop.set()
        toucher.join()
    assert final["state"] == "OK", final
    core = kubernetes.client.CoreV1Api(api_client(config_file=str(stack.kubeconfig())))

    def left_event() -> list[Any]:
        return [event for event in core.list_namespaced_event(stack.namespace).items
                if event.involved_object.name == f"ingest-{final['job_id']}" and event.reason == "SourceLeft"]

    events = wait_for(left_event, timeout=30, what="the SourceLeft event")
    assert "changed after it was copied" in events[0].message
    assert source.read_bytes() == data, "a source that changed must be left where it is"


def test_get_state_answers_another_users_job_as_missing(replica: str) -> None:
    """An answer never reveals what the caller may not read: bob's job id, state and exception
    (which may name his files) are alice's only as a 404, word for word the one of a missing job."""
    with client(replica, "bob") as bob, client(replica, "alice") as alice:
        good, _ = bundle({"bob/private.txt": b"bob's"})
        job = bob.post("/upload", content=good).json()["job_id"]
        assert wait_complete(bob, job)["state"] == "OK"
        assert bob.get("/get_state", params={"job_id": job}).status_code == 200
        missing = alice.get("/get_state", params={"job_id": 10**15})
        assert missing.status_code == 404
        for answer in (alice.get("/get_state", params={"job_id": job}), alice.get(f"/get_state/{job}")):
            assert answer.status_code == 404
            assert answer.json()["message"] == missing.json()["message"].replace(str(10**15), str(job))
            assert "private" not in answer.text and "OK" not in answer.text
