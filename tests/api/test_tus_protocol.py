"""The tus pieces that need no stack: header parsing, the lock decisions, and the checkpoint's pickle."""
from __future__ import annotations

import base64
import datetime
import hashlib
import pickle

import pytest

from ingest import jobs, resumable
from ingest.api.tus import claims, protocol
from ingest.api.tus.parts import Checkpoint
from ingest.api.tus.protocol import TusError
from ingest.bundle import TarScanner
from tests.bundle.builders import make_bundle


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_upload_metadata() -> None:
    assert protocol.parse_metadata(f"filename {b64('run 42.tar')},is_confidential") == {
        "filename": "run 42.tar", "is_confidential": ""}
    assert protocol.parse_metadata("") == {}
    not_utf8 = base64.b64encode(b"\xff").decode()
    for bad in ("filename !!!", f"a {b64('x')},a {b64('y')}", "k a b", f"k {not_utf8}"):
        with pytest.raises(TusError) as error:
            protocol.parse_metadata(bad)
        assert error.value.status == 400


def test_upload_checksum() -> None:
    digest = base64.b64encode(hashlib.sha1(b"abc").digest()).decode()
    parsed = protocol.parse_checksum(f"sha1 {digest}")
    assert parsed.algorithm == "sha1" and parsed.digest == hashlib.sha1(b"abc").digest()
    assert protocol.parse_checksum(None) is None
    for bad in (f"md5 {digest}", "sha1 not-base64!", f"sha256 {digest}"):
        with pytest.raises(TusError) as error:
            protocol.parse_checksum(bad)
        assert error.value.status == 400


def job(**tus: object) -> dict:
    status = {**jobs.initial_status(), resumable.FIELD: {"offset": 0, "length": 100, **tus}}
    return {"metadata": {"name": "ingest-1"}, "spec": {"jobId": 1}, "status": status}


def later(seconds: float) -> str:
    return jobs.rfc3339(jobs.now() + datetime.timedelta(seconds=seconds))


def test_claim_refuses_a_live_lock_and_a_moved_offset() -> None:
    taken = job(lock={"holder": "other", "until": later(20)})
    with pytest.raises(TusError) as error:
        claims.claim("me", 0, 60)(taken)
    assert error.value.status == 423
    lapsed = job(lock={"holder": "other", "until": later(-1)})
    change = claims.claim("me", 0, 60)(lapsed)
    assert change[resumable.FIELD]["lock"]["holder"] == "me"
    with pytest.raises(TusError) as error:
        claims.claim("me", 5, 60)(job())
    assert error.value.status == 409 and error.value.headers["Upload-Offset"] == "0"


def test_a_writer_that_lost_the_lock_commits_nothing() -> None:
    mine = job(lock={"holder": "me", "until": later(20)})
    commit = claims.commit("me", offset=50, length=100, generation=1, expiry_seconds=60, staged=False)
    change = commit(mine)
    assert change[resumable.FIELD]["offset"] == 50 and change["taskPercent"] == 50.0
    assert change[resumable.FIELD]["lock"] is None
    assert commit(job(lock={"holder": "other", "until": later(20)})) is None
    failed = job(lock={"holder": "me", "until": later(20)})
    failed["status"]["state"] = jobs.FAILED
    assert commit(failed) is None
    final = claims.commit("me", offset=100, length=100, generation=2, expiry_seconds=60, staged=True)(mine)
    assert final["phase"] == jobs.PHASE_STAGED


def test_expiry_waits_for_a_lapsed_lock() -> None:
    now = jobs.now()
    assert resumable.expired(job(expires=later(-1)), now)
    assert not resumable.expired(job(expires=later(30)), now)
    assert not resumable.expired(job(expires=later(-1), lock={"holder": "x", "until": later(10)}), now)
    staged = job(expires=later(-1))
    staged["status"]["phase"] = jobs.PHASE_STAGED
    assert not resumable.expired(staged, now)


def test_the_scanner_resumes_from_its_pickle() -> None:
    raw, _ = make_bundle({"data/a.bin": bytes(range(256)) * 40, "data/b.txt": b"hello"})
    scanner = TarScanner()
    scanner.feed(raw[:3001])
    restored = pickle.loads(pickle.dumps(Checkpoint(scanner, [(1, "etag", 3001)], {}))).scanner
    restored.feed(raw[3001:])
    whole = TarScanner()
    whole.feed(raw)
    assert restored.finish() == whole.finish()
