"""Every bundle of the real-world corpus (tests/bundle/corpus.py), through the pure layer.

A bundle that ingests must give every listed file's exact bytes at the offsets the index records
(checked against Python's tarfile, which frames members as Pacifica does); one that fails must
fail at its step with a message that names the file and says what to change.
"""
from __future__ import annotations

import io
import tarfile

import pytest

from ingest.bundle import BundleError, TarIndex, hasher, match, parse_metadata

from .builders import scan
from .corpus import Case, corpus

CASES = corpus()


def ingest(case: Case, chunks: int | None = None) -> dict[str, bytes]:
    """What the worker would archive: each listed file's bytes, read at the index's offsets."""
    index = scan(case.tar, chunks=chunks)
    index = TarIndex.from_json(index.to_json())  # what the worker gets: the index the API recorded
    pairs = match(parse_metadata(index.metadata, members=len(index.members)), index)
    files = {}
    for entry, member in pairs:
        data = case.tar[member.data_offset:member.data_end]
        digest = hasher(entry.hashtype)()
        digest.update(data)
        assert digest.hexdigest() == entry.hashsum, entry.path
        files[entry.path] = data
    return files


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 20 and len({case.name for case in CASES}) == len(CASES)
    assert sum(case.ingests for case in CASES) >= 15 and sum(not case.ingests for case in CASES) >= 5


@pytest.mark.parametrize("case", [case for case in CASES if case.ingests], ids=lambda case: case.name)
def test_bundles_that_ingest_give_every_byte(case: Case) -> None:
    assert ingest(case) == case.files
    assert ingest(case, chunks=97) == case.files  # the API sees the body in arbitrary chunks


# tarfile takes the atime/ctime of an old GNU header for a ustar name prefix (it reads a name no
# Files entry gives), which the scanner does not: that case is checked by the test above only.
@pytest.mark.parametrize("case", [case for case in CASES if case.ingests and case.name != "go-formatgnu-atime"],
                         ids=lambda case: case.name)
def test_tarfile_reads_the_same_bytes(case: Case) -> None:
    with tarfile.open(fileobj=io.BytesIO(case.tar), errors="surrogateescape") as tar:
        by_name = {info.name.removeprefix("./").replace("/./", "/"): info for info in tar.getmembers()}
        for path, data in case.files.items():
            member = tar.extractfile(by_name[path])
            assert member is not None and member.read() == data, path


@pytest.mark.parametrize("case", [case for case in CASES if not case.ingests], ids=lambda case: case.name)
def test_bundles_that_fail_say_what_to_change(case: Case) -> None:
    with pytest.raises(BundleError) as caught:
        ingest(case)
    error = caught.value
    assert error.task == case.task, error.message
    for word in case.words:
        assert word in error.message, f"{word!r} not in {error.message!r}"
