"""The local S3 server (Ceph RGW, see ingest/local/objectstore/) through the minio SDK."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from ingest.local.objectstore import GIB, ObjectStore, external_endpoint, free_port

pytestmark = pytest.mark.processes  # the object store comes from Debian packages, as `make objectstore` installs it

MIB = 1024 * 1024
BIG_SIZE = 100 * MIB
CHUNK = MIB


def _chunk(index: int) -> bytes:
    return random.Random(index).randbytes(CHUNK)


def _expected(offset: int, length: int) -> bytes:
    first, last = offset // CHUNK, (offset + length - 1) // CHUNK
    data = b"".join(_chunk(i) for i in range(first, last + 1))
    start = offset - first * CHUNK
    return data[start : start + length]


class GeneratorReader(io.RawIOBase):
    """A readable stream over a generator of byte chunks (a stand-in for a request body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out


def _client(store: ObjectStore, secret_key: str | None = None) -> Minio:
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=120),
        maxsize=16,
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        store.endpoint,
        access_key=store.access_key,
        secret_key=secret_key or store.secret_key,
        secure=False,
        region="us-east-1",
        http_client=http,
    )


def _ensure_bucket(client: Minio, bucket: str) -> None:
    """Check, then create; a server that says we already own it (MinIO) counts as success."""
    if client.bucket_exists(bucket):
        return
    try:
        client.make_bucket(bucket)
    except S3Error as exc:
        if exc.code != "BucketAlreadyOwnedByYou":
            raise


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    s = ObjectStore(
        data_dir=tmp_path_factory.mktemp("objectstore"),
        port=free_port(),
        mon_port=free_port(),
        access_key="test-access",
        secret_key="test-secret-key-0123",
    )
    t0 = time.monotonic()
    try:
        s.start(timeout=300)  # includes the one-time download when the cache is empty
        print(f"\nobject store up in {time.monotonic() - t0:.1f} s at {s.endpoint}")
        yield s
    finally:
        s.stop()
    assert s.pids() == {}


@pytest.fixture(scope="module")
def client(store: ObjectStore) -> Minio:
    return _client(store)


@pytest.fixture(scope="module")
def bucket(client: Minio) -> str:
    _ensure_bucket(client, "ingest-test")
    return "ingest-test"


def test_ensure_bucket_is_idempotent(client: Minio, bucket: str) -> None:
    _ensure_bucket(client, bucket)
    _ensure_bucket(client, bucket)
    try:  # creating it again without the check: RGW says 200, MinIO BucketAlreadyOwnedByYou
        client.make_bucket(bucket)
    except S3Error as exc:
        assert exc.code == "BucketAlreadyOwnedByYou"
    assert bucket in {b.name for b in client.list_buckets()}


def test_multipart_upload_of_unknown_length(client: Minio, bucket: str) -> None:
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for i in range(BIG_SIZE // CHUNK):
            data = _chunk(i)
            digest.update(data)
            yield data

    reader = typing.cast(typing.BinaryIO, GeneratorReader(chunks()))
    client.put_object(bucket, "big/blob.bin", reader, length=-1, part_size=16 * MIB)
    assert client.stat_object(bucket, "big/blob.bin").size == BIG_SIZE

    for offset, length in ((0, 10), (CHUNK - 7, 20), (37 * CHUNK + 12345, 3 * CHUNK), (BIG_SIZE - 5, 5)):
        resp = client.get_object(bucket, "big/blob.bin", offset=offset, length=length)
        try:
            assert resp.read() == _expected(offset, length), (offset, length)
        finally:
            resp.close()
            resp.release_conn()

    whole = hashlib.sha256()
    resp = client.get_object(bucket, "big/blob.bin")
    try:
        for part in resp.stream(4 * MIB):
            whole.update(part)
    finally:
        resp.close()
        resp.release_conn()
    assert whole.hexdigest() == digest.hexdigest()


def test_list_past_1000_keys_then_batch_delete(client: Minio, bucket: str) -> None:
    names = [f"many/{i:05d}.txt" for i in range(1100)]

    def put(name: str) -> None:
        data = name.encode()
        client.put_object(bucket, name, io.BytesIO(data), length=len(data))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, names))

    listed = [o.object_name for o in client.list_objects(bucket, prefix="many/", recursive=True)]
    assert listed == names

    errors = list(client.remove_objects(bucket, (DeleteObject(n) for n in names)))
    assert errors == []
    assert list(client.list_objects(bucket, prefix="many/", recursive=True)) == []


def test_wrong_secret_key_is_refused(store: ObjectStore, bucket: str) -> None:
    bad = _client(store, secret_key="not-the-secret")
    with pytest.raises(S3Error) as info:
        bad.list_objects(bucket).__next__()
    assert info.value.response.status == 403


def test_data_survives_stop_and_start(store: ObjectStore, client: Minio, bucket: str) -> None:
    client.put_object(bucket, "kept.txt", io.BytesIO(b"still here"), length=10)
    before = store.usage()
    assert before["size_bytes"] == store.block_size and 0 < before["used_bytes"] < before["size_bytes"]
    store.stop()
    assert not store.running() and store.pids() == {}
    t0 = time.monotonic()
    store.block_size += GIB  # a larger size grows the store on its next start, data kept
    store.start(timeout=120)
    assert store.usage()["size_bytes"] == before["size_bytes"] + GIB
    print(f"\nobject store restarted in {time.monotonic() - t0:.1f} s")
    resp = client.get_object(bucket, "kept.txt")
    try:
        assert resp.read() == b"still here"
    finally:
        resp.close()
        resp.release_conn()
    assert client.stat_object(bucket, "big/blob.bin").size == BIG_SIZE


def test_external_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("INGEST_S3_ENDPOINT", "INGEST_S3_ACCESS_KEY", "INGEST_S3_SECRET_KEY", "INGEST_S3_SECURE"):
        monkeypatch.delenv(var, raising=False)
    assert external_endpoint() is None

    monkeypatch.setenv("INGEST_S3_ENDPOINT", "minio.example:9000")
    monkeypatch.setenv("INGEST_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("INGEST_S3_SECRET_KEY", "sk")
    assert external_endpoint() == {
        "endpoint": "minio.example:9000",
        "access_key": "ak",
        "secret_key": "sk",
        "secure": False,
        "region": "us-east-1",
    }
    monkeypatch.setenv("INGEST_S3_SECURE", "true")
    assert external_endpoint()["secure"] is True  # type: ignore[index]

    monkeypatch.setenv("INGEST_S3_ENDPOINT", "https://s3.example/")
    monkeypatch.setenv("INGEST_S3_SECURE", "")
    cfg = external_endpoint()
    assert cfg is not None and cfg["endpoint"] == "s3.example" and cfg["secure"] is True
    assert os.environ["INGEST_S3_ENDPOINT"] == "https://s3.example/"
