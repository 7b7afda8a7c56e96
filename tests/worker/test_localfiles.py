"""The openat walk beneath a /move root: links swapped in after the check are never followed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.sources import local_place
from ingest.users import roots_for
from ingest.worker.localfiles import LocalFile, Refused


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "alice"
    (root / "run").mkdir(parents=True)
    (root / "run" / "a.txt").write_bytes(b"alice's data")
    other = tmp_path / "bob"
    (other / "run").mkdir(parents=True)
    (other / "run" / "a.txt").write_bytes(b"bob's secret")
    return root, other


def test_a_plain_file_is_checked_opened_and_removed(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    local = LocalFile(str(root), ("run", "a.txt"))
    assert local.check() == len(b"alice's data")
    with local.open() as stream:
        assert stream.read() == b"alice's data"
    assert local.remove() is None
    assert not (root / "run" / "a.txt").exists()


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(tree: tuple[Path, Path]) -> None:
    root, other = tree
    local = LocalFile(str(root), ("run", "a.txt"))
    local.check()
    os.rename(root / "run", root / "old-run")
    (root / "run").symlink_to(other / "run")
    with pytest.raises(Refused):
        local.open()
    assert (other / "run" / "a.txt").read_bytes() == b"bob's secret"


def test_a_file_swapped_for_a_link_after_the_check_is_not_followed(tree: tuple[Path, Path]) -> None:
    root, other = tree
    local = LocalFile(str(root), ("run", "a.txt"))
    local.check()
    (root / "run" / "a.txt").unlink()
    (root / "run" / "a.txt").symlink_to(other / "run" / "a.txt")
    with pytest.raises(Refused):
        local.open()


def test_a_file_replaced_after_the_check_is_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    local = LocalFile(str(root), ("run", "a.txt"))
    local.check()
    (root / "run" / "b.txt").write_bytes(b"another file")
    os.replace(root / "run" / "b.txt", root / "run" / "a.txt")
    with pytest.raises(Refused):
        local.open()


@pytest.mark.parametrize("change", ["replaced", "modified", "link"])
def test_a_source_changed_after_the_copy_is_left(tree: tuple[Path, Path], change: str) -> None:
    root, other = tree
    path = root / "run" / "a.txt"
    local = LocalFile(str(root), ("run", "a.txt"))
    local.check()
    local.open().close()
    if change == "replaced":
        (root / "run" / "b.txt").write_bytes(b"alice's data")
        os.replace(root / "run" / "b.txt", path)
    elif change == "modified":
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    else:
        path.unlink()
        path.symlink_to(other / "run" / "a.txt")
    assert "changed after it was copied" in (local.remove() or "")
    assert path.exists() or path.is_symlink()
    assert (other / "run" / "a.txt").read_bytes() == b"bob's secret"


def test_a_fifo_is_refused_without_hanging(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "run" / "pipe")
    with pytest.raises(Refused):
        LocalFile(str(root), ("run", "pipe")).check()


@pytest.mark.parametrize("parts", [(), ("..", "bob", "run", "a.txt"), ("run", ".", "a.txt"), ("run", "", "a.txt")])
def test_only_plain_components_beneath_the_root(tree: tuple[Path, Path], parts: tuple[str, ...]) -> None:
    root, _ = tree
    with pytest.raises(Refused):
        LocalFile(str(root), parts).check()


def test_per_user_roots() -> None:
    roots = ("/shared", "/home/{user}/outbox")
    assert roots_for(roots, None) == ("/shared",)
    assert roots_for(roots, "alice") == ("/home/alice/outbox",)
    assert roots_for(roots, "../bob") == ()
    assert local_place("/home/alice/outbox/run/a.txt",
                       roots_for(roots, "alice")) == ("/home/alice/outbox", ("run", "a.txt"))
    assert local_place("/home/bob/outbox/run/a.txt", roots_for(roots, "alice")) is None
    assert local_place("/home/alice/outbox2/a.txt", roots_for(roots, "alice")) is None
    assert local_place("/home/alice/outbox/../../bob/outbox/a.txt", roots_for(roots, "alice")) is None
