"""Hash types and hash sums."""
from __future__ import annotations

import hashlib

import pytest

from ingest.bundle import ALGORITHMS, BundleError, hasher, normalise_hashsum, normalise_hashtype
from ingest.jobs import LOAD_METADATA


def test_supported_algorithms() -> None:
    assert {"sha1", "md5", "sha224", "sha256", "sha384", "sha512", "sha3_256", "blake2b", "blake2s"} <= ALGORITHMS
    assert not any(name.startswith("shake") for name in ALGORITHMS)  # no fixed digest length


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_hasher_matches_hashlib(name: str) -> None:
    digest = hasher(name)()
    digest.update(b"abc")
    assert digest.hexdigest() == hashlib.new(name, b"abc").hexdigest()
    assert normalise_hashsum(digest.hexdigest(), hashtype=name, what="x") == digest.hexdigest()


@pytest.mark.parametrize(("given_name", "canonical"),
                         [("SHA1", "sha1"), ("Sha256", "sha256"), ("md5", "md5"), ("BLAKE2B", "blake2b")])
def test_hashtype_is_case_insensitive(given_name: str, canonical: str) -> None:
    assert normalise_hashtype(given_name, what="x") == canonical


@pytest.mark.parametrize("name", ["crc32", "sha-256", "", "shake_128", " sha1", "sha1 "])
def test_unknown_hashtypes(name: str) -> None:
    with pytest.raises(BundleError) as caught:
        normalise_hashtype(name, what='Files entry 3 ("a.txt")')
    assert caught.value.task == LOAD_METADATA
    assert "unknown hashtype" in caught.value.message and 'Files entry 3 ("a.txt")' in caught.value.message
    assert "sha256" in caught.value.message  # says what would work


def test_hashsum_rules() -> None:
    good = hashlib.sha1(b"x").hexdigest()
    assert normalise_hashsum(good.upper(), hashtype="sha1", what="x") == good
    for bad in (good[:-1], good + "0", "g" * 40, " " + good[1:], "", good[:-1] + "\n", "0x" + good[2:], "１" * 40):
        with pytest.raises(BundleError) as caught:
            normalise_hashsum(bad, hashtype="sha1", what="Files entry 1")
        assert caught.value.task == LOAD_METADATA
        assert "malformed sha1 hashsum" in caught.value.message and "40 hex digits" in caught.value.message


def test_hasher_wants_a_canonical_name() -> None:
    with pytest.raises(ValueError):
        hasher("SHA1")
