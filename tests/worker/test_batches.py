"""How the worker groups a bundle's files into reads, and when it trusts the API's hash.

Bundles are written by the service's writer and indexed by the API's scanner, so offsets, gaps and
headers are real. The rules (`ingest.worker.pipeline`): a file above `SMALL_FILE` streams on its
own; small neighbours share one ranged read (a window) of at most `WINDOW_BYTES`, `WINDOW_FILES`
files, with at most `WINDOW_GAP` bytes between two of them; every file is copied exactly once.
Nothing here reads from storage: windows are fetched lazily and these tests never fetch.
"""
from __future__ import annotations

import hashlib
import itertools
import threading

import kubernetes
import pytest

from ingest import lifecycle
from ingest.bundle import BundleError, Member, TarIndex, TarScanner, match, parse_metadata
from ingest.bundle.writer import FileData, bundle
from ingest.config import Settings
from ingest.kube import JobStore
from ingest.storage import Storage
from ingest.worker.pipeline import SMALL_FILE, WINDOW_BYTES, WINDOW_FILES, WINDOW_GAP, Worker, prehashed
from ingest.worker.transfer import Batch, Copy

KiB = 1024


def index_of(sizes: dict[str, int]) -> TarIndex:
    files = [FileData.of(name, bytes([n % 251]) * size, mtime=0) for n, (name, size) in enumerate(sizes.items())]
    scanner = TarScanner()
    for chunk in bundle(files, transaction=[{"destinationTable": "Transactions.project", "value": "p"}]):
        scanner.feed(chunk)
    return scanner.finish()


def plan(index: TarIndex, names: list[str]) -> list[tuple[Member, Copy]]:
    members = {member.name: member for member in index.members}
    return [(members[name], Copy(label=name, key=f"1/{name}", size=members[name].size, hashtype="sha1", hashsum="",
                                 open=lambda: None, metadata={}))  # never opened: nothing is fetched here
            for name in names]


@pytest.fixture(scope="module")
def worker() -> Worker:
    settings = Settings.from_env({})
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))
    return Worker(settings=settings, store=JobStore(client, settings.namespace), storage=Storage(settings),
                  client=client, name="ingest-1", owner=lifecycle.Owner(1, "ingest-1-worker-1", "uid-1"),
                  stop=threading.Event())


def groups(index: TarIndex, batches: list[Batch]) -> list[list[str]]:
    return [[copy.label for copy in batch.copies] for batch in batches]


def check_rules(index: TarIndex, planned: list[tuple[Member, Copy]], batches: list[Batch]) -> None:
    members = {member.name: member for member in index.members}
    labels = [copy.label for batch in batches for copy in batch.copies]
    assert sorted(labels) == sorted(copy.label for _, copy in planned)  # each file exactly once
    assert labels == sorted(labels, key=lambda name: members[name].data_offset)  # in bundle order
    for batch in batches:
        inside = [members[copy.label] for copy in batch.copies]
        if batch.window is None:
            assert len(inside) == 1 and inside[0].size > SMALL_FILE
            continue
        assert all(member.size <= SMALL_FILE for member in inside)
        assert batch.window.start == inside[0].data_offset
        assert inside[-1].data_end - inside[0].data_offset <= WINDOW_BYTES and len(inside) <= WINDOW_FILES
        assert all(later.data_offset - earlier.data_end <= WINDOW_GAP for earlier, later in itertools.pairwise(inside))


def test_many_tiny_files_share_reads_of_at_most_window_files(worker: Worker) -> None:
    sizes = {f"data/t/{n:04d}": 100 for n in range(WINDOW_FILES + 44)}
    index = index_of(sizes)
    planned = plan(index, list(sizes))
    batches = worker.batches("staging", "1.tar", planned)
    assert [len(batch.copies) for batch in batches] == [WINDOW_FILES, 44]
    check_rules(index, planned, batches)


def test_a_window_never_spans_more_than_window_bytes(worker: Worker) -> None:
    sizes = {f"data/m/{n}": 600 * KiB for n in range(10)}
    index = index_of(sizes)
    planned = plan(index, list(sizes))
    batches = worker.batches("staging", "1.tar", planned)
    assert [len(batch.copies) for batch in batches] == [6, 4]  # 7 x 600 KiB would pass 4 MiB
    check_rules(index, planned, batches)


def test_a_large_file_streams_alone_and_splits_the_small_ones(worker: Worker) -> None:
    sizes = {"data/a": 10, "data/b": 20, "data/large": SMALL_FILE + 1, "data/c": 30, "data/edge": SMALL_FILE}
    index = index_of(sizes)
    planned = plan(index, list(reversed(sizes)))  # the plan's order does not matter, the bundle's does
    batches = worker.batches("staging", "1.tar", planned)
    assert groups(index, batches) == [["data/a", "data/b"], ["data/large"], ["data/c", "data/edge"]]
    assert batches[1].window is None and batches[0].window is not None
    check_rules(index, planned, batches)


def test_an_unlisted_member_splits_a_window_only_when_it_is_a_wide_gap(worker: Worker) -> None:
    sizes = {"data/a": 10, "data/unlisted-small": WINDOW_GAP - 4 * 512, "data/b": 10,
             "data/unlisted-wide": WINDOW_GAP + 1, "data/c": 10}
    index = index_of(sizes)
    planned = plan(index, ["data/a", "data/b", "data/c"])
    batches = worker.batches("staging", "1.tar", planned)
    assert groups(index, batches) == [["data/a", "data/b"], ["data/c"]]
    check_rules(index, planned, batches)


def test_no_file_no_batch(worker: Worker) -> None:
    assert worker.batches("staging", "1.tar", []) == []


# -- prehashed: the API's sha1 of a large member ---------------------------------------------------
def large_bundle(hashtype: str = "sha1") -> tuple[TarIndex, list[tuple[object, Member]]]:
    index = index_of({"data/big.bin": 2048, "data/small.txt": 5})
    return index, match(parse_metadata(index.metadata), index)


def test_a_member_the_api_hashed_is_copied_server_side_when_the_sums_agree() -> None:
    index, pairs = large_bundle()
    entry, member = pairs[0]
    index.sha1[member.data_offset] = hashlib.sha1(bytes([0]) * 2048).hexdigest()
    assert prehashed(index, entry, member, "staging", "1.tar") == {
        "server_copy": ("staging", "1.tar"), "verified_range": (member.data_offset, 2048)}


def test_a_member_the_api_hashed_differently_fails_at_ingest_files_naming_both_sums() -> None:
    index, pairs = large_bundle()
    entry, member = pairs[0]
    index.sha1[member.data_offset] = "f" * 40
    with pytest.raises(BundleError) as failure:
        prehashed(index, entry, member, "staging", "1.tar")
    assert failure.value.task == "ingest files"
    assert failure.value.message == (f"data/big.bin: sha1 mismatch: metadata.txt says {entry.hashsum}, "
                                     f"the file's bytes hash to {'f' * 40}")


def test_a_member_the_api_did_not_hash_is_read_and_verified_by_the_worker() -> None:
    index, pairs = large_bundle()
    entry, member = pairs[1]
    assert prehashed(index, entry, member, "staging", "1.tar") == {}
