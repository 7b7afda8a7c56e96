"""Matching a manifest to a bundle's index: which member backs which Files entry.

The worker loads the index the API recorded and the manifest parsed from metadata.txt, then asks
`match` for the (entry, member) pairs to copy. Members no Files entry lists are ignored, as
upstream ignores them; every listed file must be exactly one regular member of the declared size.

Which step a mismatch fails (see `errors.py` for the rule):

* `load metadata` - the bundle is hostile or ambiguous, and nothing may move: a listed path is a
  symlink, hard link, directory, device, FIFO, sparse file or unknown member type, or appears more
  than once in the tar. (tar's own rule is "the last one wins", but then `tar -x`, `tarfile` and
  our index could each pick a different copy; refusing is the only answer everyone agrees on.)
  Also the archive keys (`plan_keys`): a key over S3's 1,024 bytes, two files on one key, or a
  file whose key is the folder of another's (`data/x` and `data/x/y`: MinIO cannot hold both).
* `ingest files` - upstream's step for a missing member; and a size that differs from the entry's
  declared `size` (upstream never checked sizes; checking here fails the job before any bytes are
  copied). These are returned by `pair_members`, not raised, so the worker can go on verifying
  the other files and report every problem at once.

All `load metadata` problems are reported before any `ingest files` problem, and every problem of
a step is reported, not only the first. A missing member whose name differs only by something
the scanner keeps apart on purpose (a leading `/`, a `..`, a name that is not UTF-8) is named in
the problem, so the scientist learns how to make the tar.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from ingest.jobs import INGEST_FILES, LOAD_METADATA

from .errors import DEFAULT_MAX_LISTED, BundleError, Problem
from .index import Member, MemberType, TarIndex
from .metadata import FileEntry, Manifest
from .names import DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES, check_key_template, key_length, path_parts

VERIFY_VERB = "failed verification"
VALIDATE_VERB = "failed validation"
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")

_ARTICLES = {
    MemberType.DIR: "a directory",
    MemberType.SYMLINK: "a symbolic link",
    MemberType.HARDLINK: "a hard link",
    MemberType.CHARDEV: "a character device",
    MemberType.BLOCKDEV: "a block device",
    MemberType.FIFO: "a FIFO",
    MemberType.SPARSE: "a sparse file",
    MemberType.OTHER: "a special member",
}


def pair_members(manifest: Manifest, index: TarIndex, *, limit: int = DEFAULT_MAX_LISTED
                 ) -> tuple[list[tuple[FileEntry, Member]], list[Problem]]:
    """The member of every Files entry that has a usable one, and the `ingest files` problems of
    the others (missing, wrong size); a `load metadata` BundleError lists every hostile entry."""
    members = index.by_name()
    hostile: list[Problem] = []
    missing: list[Problem] = []
    pairs: list[tuple[FileEntry, Member]] = []
    hints: dict[str, Member] | None = None
    for entry in manifest.files:
        found = members.get(entry.path)
        if not found:
            if hints is None:
                hints = _near_names(index)
            missing.append(Problem(entry.path, "missing-member", _missing(entry, hints.get(entry.path))))
            continue
        if len(found) > 1:
            offsets = ", ".join(str(member.header_offset) for member in found)
            hostile.append(Problem(
                entry.path, "ambiguous-member",
                f"{entry.path} ({entry.label}) is in the bundle {len(found)} times (headers at offsets "
                f"{offsets}); refusing an ambiguous bundle",
            ))
            continue
        member = found[0]
        if member.type is not MemberType.FILE:
            target = f" to {member.linkname!r}" if member.linkname and member.type in (
                MemberType.SYMLINK, MemberType.HARDLINK) else ""
            hostile.append(Problem(
                entry.path, "not-a-regular-file",
                f"{entry.path} ({entry.label}) is {_ARTICLES[member.type]}{target} in the bundle, "
                "not a regular file",
            ))
            continue
        if member.size != entry.size:
            missing.append(Problem(
                entry.path, "size-mismatch",
                f"{entry.path} is {member.size} bytes in the bundle but metadata.txt says "
                f"{entry.size} bytes ({entry.label})",
            ))
            continue
        pairs.append((entry, member))
    if hostile:
        raise BundleError.of_files(LOAD_METADATA, hostile, total=len(manifest.files), verb=VALIDATE_VERB, limit=limit)
    return pairs, missing


def match(manifest: Manifest, index: TarIndex, *, limit: int = DEFAULT_MAX_LISTED) -> list[tuple[FileEntry, Member]]:
    """The member of every Files entry, in entry order; BundleError listing every entry without one."""
    pairs, problems = pair_members(manifest, index, limit=limit)
    if problems:
        raise BundleError.of_files(INGEST_FILES, problems, total=len(manifest.files), verb=VERIFY_VERB, limit=limit)
    return pairs


def _missing(entry: FileEntry, near: Member | None) -> str:
    text = f"{entry.path} is listed in metadata.txt but not in the bundle"
    if near is None:
        return text
    if near.name.startswith("/"):
        why = "an absolute name, which is never read; create the tar with relative names (tar -C DIR -cf ...)"
    elif _ESCAPE.search(near.name):
        why = "a name that is not UTF-8; create the tar with UTF-8 names (a UTF-8 locale, or tar --format=pax)"
    elif "\\" in near.name:
        why = "a name with backslash separators; create the tar with / separators (tar, not a Windows archiver)"
    else:
        why = "a '..' component, which is never read; create the tar from the bundle's folder"
    return f"{text}: the bundle has it as '{near.name}', {why}"


def _near_names(index: TarIndex) -> dict[str, Member]:
    """Members the scanner keeps apart from safe paths, under the path they were probably meant as."""
    near: dict[str, Member] = {}
    for member in index.members:
        name = member.name
        if not (name.startswith("/") or "\\" in name or "/../" in f"/{name}/"):
            continue
        if _ESCAPE.search(name):
            raw = b"".join(
                bytes.fromhex(part) if position % 2 else part.encode("utf-8", "surrogatepass")
                for position, part in enumerate(_ESCAPE.split(name))
            )
            name = raw.decode("utf-8", "replace") if _is_utf8(raw) else raw.decode("cp1252", "replace")
        elif "\\" in name:
            name = name.replace("\\", "/")
        resolved: list[str] = []
        for part in path_parts(name):
            if part != "..":
                resolved.append(part)
            elif resolved:
                resolved.pop()
        near.setdefault("/".join(resolved), member)
    return near


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def plan_keys(
    entries: Sequence[FileEntry],
    *,
    job_id: int,
    template: str = DEFAULT_KEY_TEMPLATE,
    file_ids: Sequence[int] | None = None,
    reserved: Mapping[str, str] | None = None,
    task: str = LOAD_METADATA,
    limit: int = DEFAULT_MAX_LISTED,
) -> list[str]:
    """The archive key of each entry, refusing (all at once) keys S3 cannot store or that clash.

    `reserved` maps keys the job writes for itself (its metadata document) to how messages name
    them. Refused: a key over `MAX_KEY_BYTES`; two entries on one key (the template drops what
    tells them apart, e.g. `{job_id}/{name}`); a key that is also the folder of another key
    (`data/x` and `data/x/y`); a key equal to, or the folder of, a reserved key.
    """
    check_key_template(template)
    if file_ids is not None and len(file_ids) != len(entries):
        raise ValueError(f"{len(file_ids)} file ids for {len(entries)} entries")
    problems: list[Problem] = []
    owners: dict[str, str] = dict(reserved or {})  # key -> how a message names its owner
    keys: list[str] = []
    for position, entry in enumerate(entries):
        key = entry.key(job_id=job_id, template=template, file_id=None if file_ids is None else file_ids[position])
        keys.append(key)
        length = key_length(key)
        if length > MAX_KEY_BYTES:
            problems.append(Problem(
                entry.path, "key-too-long",
                f"{entry.path}: its archive key would be {length} bytes, over S3's limit of {MAX_KEY_BYTES} "
                "bytes; shorten its subdir or name",
            ))
            continue
        other = owners.get(key)
        if other is not None:
            problems.append(Problem(
                entry.path, "key-collision",
                f"{other} and {entry.path} ({entry.label}) would both be stored as {key!r} "
                f"(archive key template {template!r})",
            ))
            continue
        owners[key] = entry.path
    for key, owner in owners.items():
        folder = key
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            other = owners.get(folder)
            if other is not None:
                problems.append(Problem(
                    owner, "file-prefix-conflict",
                    f"{other} and {owner} cannot both be stored: {other}'s key {folder!r} is a folder "
                    f"of {owner}'s key {key!r}; rename one of them",
                ))
                break
    if problems:
        raise BundleError.of_files(task, problems, total=len(entries), verb=VALIDATE_VERB, limit=limit)
    return keys


def archive_keys(
    entries: Iterable[FileEntry],
    *,
    job_id: int,
    template: str = DEFAULT_KEY_TEMPLATE,
    file_ids: Sequence[int] | None = None,
    task: str = INGEST_FILES,
) -> list[str]:
    """`plan_keys` without reserved keys (kept for callers that name their own step)."""
    return plan_keys(list(entries), job_id=job_id, template=template, file_ids=file_ids, task=task)
