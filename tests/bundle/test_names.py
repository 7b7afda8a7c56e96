"""Member names, Files entry paths and archive keys."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.bundle import BundleError, Limits, archive_key, check_key_template, entry_path, normalise_member_name
from ingest.jobs import LOAD_METADATA


def path(subdir: str, name: str, **kwargs) -> str:
    return entry_path(subdir, name, what="Files entry 0", **kwargs)


@pytest.mark.parametrize("subdir", ["data/a/b/", "data//a/b", "a/b", "a//b/", "data/a/b", "a/b//"])
def test_pacifica_subdir_rule(subdir: str) -> None:
    assert path(subdir, "x.txt") == "data/a/b/x.txt"


@pytest.mark.parametrize("subdir", ["./run42", "run42/.", "./data/./run42/", "data/./run42", ".//run42"])
def test_dot_components_are_dropped_as_on_the_tar_side(subdir: str) -> None:
    # pacifica-cli uploading `./run42` writes subdir `./run42`; the member is `data/./run42/x.dat`.
    assert path(subdir, "x.dat") == "data/run42/x.dat" == normalise_member_name("data/./run42/x.dat")


@pytest.mark.parametrize("subdir", ["", "data", "data/", "data//", ".", "./data", "data/."])
def test_root_of_data(subdir: str) -> None:
    assert path(subdir, "x.txt") == "data/x.txt"


def test_only_one_leading_data_is_stripped() -> None:
    assert path("data/data/x", "f") == "data/data/x/f"
    assert path("x/data", "f") == "data/x/data/f"
    assert path("database", "f") == "data/database/f"


def test_unicode_and_odd_but_safe_names() -> None:
    assert path("Ünïcødé/数据", "файл 😀.txt") == "data/Ünïcødé/数据/файл 😀.txt"
    assert path("a b", "...x") == "data/a b/...x"
    assert path("a", "b/c.txt") == "data/a/b/c.txt"  # a name with a slash is a deeper path


@pytest.mark.parametrize(
    ("subdir", "name", "words"),
    [
        ("a", "", "no file name"),
        ("a", "dir/", "no file name"),
        ("/etc", "passwd", "absolute subdir"),
        ("a", "/etc/passwd", "absolute name"),
        ("a/../..", "x", "'..' component"),
        ("a", "..", "'..' component"),
        ("a", ".", "no file name"),
        ("a/.", "./.", "no file name"),
        ("a\x00b", "x", "control character"),
        ("a", "x\ny", "control character"),
        ("a", "x\x7f", "control character"),
        ("a\\..\\..", "x", "backslash"),
        ("a", "..\\x", "backslash"),
    ],
)
def test_unsafe_paths_are_refused(subdir: str, name: str, words: str) -> None:
    with pytest.raises(BundleError) as caught:
        path(subdir, name)
    assert caught.value.task == LOAD_METADATA
    assert words in caught.value.message and "Files entry 0" in caught.value.message


def test_path_limits() -> None:
    assert path("a", "f" * 255) == "data/a/" + "f" * 255
    with pytest.raises(BundleError, match=r"256 bytes.*max_segment_bytes"):
        path("a", "f" * 256)
    with pytest.raises(BundleError, match="max_segment_bytes"):
        path("a", "é" * 128)  # 256 UTF-8 bytes in 128 characters
    deep = "/".join(["d" * 200] * 5)
    with pytest.raises(BundleError, match=r"1016 bytes.*max_name_bytes|max_name_bytes"):
        path(deep + "/" + "d" * 20, "f")
    assert path("a", "f", limits=Limits(max_name_bytes=8)) == "data/a/f"
    with pytest.raises(BundleError, match="max_name_bytes"):
        path("ab", "f", limits=Limits(max_name_bytes=8))


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("data/a.txt", "data/a.txt"),
        ("./data/a.txt", "data/a.txt"),
        ("data//a/./b", "data/a/b"),
        ("data/dir/", "data/dir"),
        ("./", "."),
        ("metadata.txt", "metadata.txt"),
        ("./metadata.txt", "metadata.txt"),
        ("/abs//x", "/abs/x"),
        ("data/../x", "data/../x"),
        ("", "."),
    ],
)
def test_member_name_normalisation(raw: str, normalised: str) -> None:
    assert normalise_member_name(raw) == normalised


def test_archive_keys() -> None:
    assert archive_key("data/mywork/experiment/notes.txt", job_id=7) == "7/mywork/experiment/notes.txt"
    assert archive_key("data/notes.txt", job_id=7) == "7/notes.txt"  # empty subdir leaves no //
    assert archive_key("data/a/b.txt", job_id=7, template="archive/{job_id}/{file_id}", file_id=99) == "archive/7/99"
    assert archive_key("data/a/b.txt", job_id=7, template="{member}/{job_id}") == "data/a/b.txt/7"
    assert archive_key("data/a/b.txt", job_id=7, template="t/{job_id}/{path}") == "t/7/a/b.txt"
    assert archive_key("data/Ünï/😀.txt", job_id=1) == "1/Ünï/😀.txt"


@pytest.mark.parametrize("template",
                         ["{job_id}/{nope}", "{job_id.__class__}/{name}", "{name!r}", "{name:>10}", "{job_id}/static",
                          "{member}", "files/{path}"])
def test_bad_key_templates(template: str) -> None:
    with pytest.raises(ValueError):
        check_key_template(template)


def test_file_id_template_needs_a_file_id() -> None:
    with pytest.raises(ValueError):
        archive_key("data/a", job_id=1, template="{job_id}/{file_id}")


_text = st.text(st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=400, deadline=None)
@given(subdir=_text, name=_text)
def test_entry_paths_are_safe_or_refused(subdir: str, name: str) -> None:
    try:
        result = path(subdir, name)
    except BundleError as error:
        assert error.task == LOAD_METADATA
        return
    parts = result.split("/")
    assert parts[0] == "data" and len(parts) >= 2
    assert all(part not in ("", ".", "..") for part in parts)
    assert "\\" not in result and "\x00" not in result
    assert normalise_member_name(result) == result
    key = archive_key(result, job_id=3)
    assert key.startswith("3/") and "//" not in key
