"""Matching a manifest to a bundle's index: which member backs which Files entry.

The worker loads the index the API recorded and the manifest parsed from metadata.txt, then asks
`match` for the (entry, member) pairs to copy. Members no Files entry lists are ignored, as
upstream ignores them; every listed file must be exactly one regular member of the declared size.

Which step a mismatch fails (see `errors.py` for the rule):

* `load metadata` - the bundle is hostile or ambiguous, and nothing may move: a listed path is a
  symlink, hard link, directory, device, FIFO or unknown member type, or appears more than once
  in the tar. (tar's own rule is "the last one wins", but then `tar -x`, `tarfile` and our index
  could each pick a different copy; refusing is the only answer everyone agrees on.)
* `ingest files` - upstream's step for a missing member; and a size that differs from the entry's
  declared `size` (upstream never checked sizes; checking here fails the job before any bytes are
  copied).

All `load metadata` problems are reported before any `ingest files` problem.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ingest.jobs import INGEST_FILES, LOAD_METADATA

from .errors import BundleError
from .metadata import FileEntry, Manifest
from .names import DEFAULT_KEY_TEMPLATE, check_key_template
from .tarstream import Member, MemberType, TarIndex

_ARTICLES = {
    MemberType.DIR: "a directory",
    MemberType.SYMLINK: "a symbolic link",
    MemberType.HARDLINK: "a hard link",
    MemberType.CHARDEV: "a character device",
    MemberType.BLOCKDEV: "a block device",
    MemberType.FIFO: "a FIFO",
    MemberType.OTHER: "a special member",
}


def match(manifest: Manifest, index: TarIndex) -> list[tuple[FileEntry, Member]]:
    """The member of every Files entry, in entry order; BundleError if any entry has none."""
    members = index.by_name()
    later: list[BundleError] = []
    pairs: list[tuple[FileEntry, Member]] = []
    for entry in manifest.files:
        found = members.get(entry.path)
        if not found:
            later.append(
                BundleError(INGEST_FILES, f"{entry.path} is listed in metadata.txt but not in the bundle")
            )
            continue
        if len(found) > 1:
            offsets = ", ".join(str(member.header_offset) for member in found)
            raise BundleError(
                LOAD_METADATA,
                f"{entry.path} ({entry.label}) is in the bundle {len(found)} times (headers at offsets "
                f"{offsets}); refusing an ambiguous bundle",
            )
        member = found[0]
        if member.type is not MemberType.FILE:
            target = f" to {member.linkname!r}" if member.linkname and member.type in (
                MemberType.SYMLINK, MemberType.HARDLINK) else ""
            raise BundleError(
                LOAD_METADATA,
                f"{entry.path} ({entry.label}) is {_ARTICLES[member.type]}{target} in the bundle, "
                "not a regular file",
            )
        if member.size != entry.size:
            later.append(
                BundleError(
                    INGEST_FILES,
                    f"{entry.path} is {member.size} bytes in the bundle but metadata.txt says "
                    f"{entry.size} bytes ({entry.label})",
                )
            )
            continue
        pairs.append((entry, member))
    if later:
        raise later[0]
    return pairs


def archive_keys(
    entries: Iterable[FileEntry],
    *,
    job_id: int,
    template: str = DEFAULT_KEY_TEMPLATE,
    file_ids: Sequence[int] | None = None,
    task: str = INGEST_FILES,
) -> list[str]:
    """The archive object key of each entry, refusing two entries that land on one key.

    Entry paths are unique (the parser guarantees it), so a collision means the key template
    drops something that tells files apart (e.g. `{job_id}/{name}`); `task` is the step that
    writes the files (`ingest files`, or `move files` for /move).
    """
    check_key_template(template)
    entries = list(entries)
    if file_ids is not None and len(file_ids) != len(entries):
        raise ValueError(f"{len(file_ids)} file ids for {len(entries)} entries")
    keys: list[str] = []
    owners: dict[str, FileEntry] = {}
    for position, entry in enumerate(entries):
        key = entry.key(job_id=job_id, template=template, file_id=None if file_ids is None else file_ids[position])
        other = owners.get(key)
        if other is not None:
            raise BundleError(
                task,
                f"{other.label} and {entry.label} would both be stored as {key!r} "
                f"(archive key template {template!r})",
            )
        owners[key] = entry
        keys.append(key)
    return keys
