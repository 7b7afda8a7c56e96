"""Member names: Pacifica's `data/<subdir>/<name>` rule, name safety, and archive object keys.

Two kinds of names meet here, and one normalisation (`path_parts`) serves both: empty and `.`
components are dropped (`./data//a/b.txt` -> `data/a/b.txt`, a directory's trailing `/` goes
too), so a member written by `tar -C dir -cf - .` matches a Files entry whose subdir pacifica-cli
wrote as `./run42`.

* **Tar member names**, as the scanner reads them. They are *normalised*, not judged: `..` and a
  leading `/` are kept, so such a member can never equal a safe Files path and is simply never
  matched. We never extract by member name, so an odd member that no Files entry lists is
  harmless and ignored, as upstream ignores unlisted members (a name that is not UTF-8 is kept
  with `\\xNN` escapes, which no Files path can contain, see below).
* **Files entry paths**, built from a metadata entry's `subdir` and `name`. These become object
  keys, so they are judged strictly: only a `..` component, an absolute path and a NUL or other
  control character are refused - plus a backslash (a path separator to Windows tools that
  download the archive later, and the escape character of undecodable member names), an empty
  name, a path over `max_name_bytes` or a segment over `max_segment_bytes` (UTF-8 bytes), all at
  `load metadata`, before any byte moves. Names are compared as given: no Unicode normalisation,
  so an NFD name in the tar matches only an NFD name in metadata.txt, exactly as upstream.

Pacifica's rule for the member of an entry: `data/<subdir>/<name>`, where `subdir` may or may not
start with `data/` and empty components are ignored (`data/a/b/`, `data//a/b` and `a/b` all mean
`data/a/b/`). Only one leading `data` is stripped, as pacifica-uploader's bundler strips one.
"""
from __future__ import annotations

import re
import string
from typing import Final

from ingest.jobs import LOAD_METADATA

from .errors import BundleError
from .limits import DEFAULT_LIMITS, Limits

DATA_DIR: Final = "data"

#: The archive key of a file: `{job_id}/{subdir}/{name}`. Fields a template may use:
#:   job_id  - the job (= transaction) id
#:   subdir  - the normalised subdir without the leading `data/` ("" for files at the root of data/)
#:   name    - the file name (last path component)
#:   path    - `subdir/name` (the member path without `data/`)
#:   member  - the member path itself, `data/<subdir>/<name>`
#:   file_id - the file's `_id` (only when the caller passes one)
#: Empty components in the rendered key are dropped, so a root-level file gets `{job_id}/{name}`.
DEFAULT_KEY_TEMPLATE: Final = "{job_id}/{subdir}/{name}"
KEY_FIELDS: Final = frozenset({"job_id", "subdir", "name", "path", "member", "file_id"})
#: The key of a job's own metadata document. It sits beside the job's folder, not in it: with the
#: file template above every file key has a `/` after the job id, so no user path can produce it.
DEFAULT_METADATA_KEY_TEMPLATE: Final = "{job_id}.metadata.json"
#: S3's limit on an object key (UTF-8 bytes); MinIO and AWS refuse longer keys.
MAX_KEY_BYTES: Final = 1024

# C0 controls and DEL: NUL would truncate names in C code, the others break logs and headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_parts(raw: str) -> list[str]:
    """The components of a path, without empty and `.` ones: the one rule for both sides."""
    return [part for part in raw.split("/") if part not in ("", ".")]


def normalise_member_name(raw: str) -> str:
    """A tar member's name as the index keeps it: without empty and `.` components.

    `..` components and a leading `/` are kept (see the module docstring), so unsafe members stay
    recognisable and never collide with a safe path.
    """
    if "/" not in raw and raw not in ("", "."):
        return raw  # the common case, kept cheap: one member per header, up to a million headers
    joined = "/".join(path_parts(raw))
    if raw.startswith("/"):
        return "/" + joined
    return joined or "."


def opaque_member_name(name: str, *, max_bytes: int) -> str:
    """A member name fit for the index: a NUL escaped, an overlong name cut and marked (never matched)."""
    if "\x00" in name:
        name = name.replace("\x00", "\\x00")
    if len(name) > max_bytes // 4 and len(name.encode("utf-8", "surrogatepass")) > max_bytes:
        name = name[: max_bytes // 4] + f"\\...(a name of {len(name.encode('utf-8', 'surrogatepass'))} bytes)"
    return name


def check_name_limits(name: str, *, limits: Limits, what: str, task: str) -> None:
    """Refuse a name whose UTF-8 form or one of whose segments is too long."""
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > limits.max_name_bytes:
        raise BundleError(
            task,
            f"{what} is {len(encoded)} bytes long, over the limit of {limits.max_name_bytes} bytes "
            f"for a name (max_name_bytes): {_shorten(name)}",
        )
    if len(encoded) > limits.max_segment_bytes:  # otherwise no segment can be too long
        for segment in name.split("/"):
            size = len(segment.encode("utf-8", "surrogatepass"))
            if size > limits.max_segment_bytes:
                raise BundleError(
                    task,
                    f"{what} has a path segment of {size} bytes, over the limit of "
                    f"{limits.max_segment_bytes} bytes (max_segment_bytes): {_shorten(segment)}",
                )


def entry_path(subdir: str, name: str, *, what: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The member path `data/<subdir>/<name>` of a Files entry, or a `load metadata` BundleError.

    `what` names the entry in error messages, e.g. ``Files entry 4 ("notes.txt")``.
    """
    for field, value in (("subdir", subdir), ("name", name)):
        bad = _CONTROL.search(value)
        if bad:
            raise BundleError(
                LOAD_METADATA,
                f"{what} has a control character ({bad.group()!r}) in its {field} {value!r}",
                reason="unsafe-path",
            )
        if "\\" in value:
            raise BundleError(
                LOAD_METADATA,
                f"{what} has a backslash in its {field} {value!r}; use / to separate directories",
                reason="unsafe-path",
            )
        if value.startswith("/"):
            raise BundleError(
                LOAD_METADATA, f"{what} has an absolute {field} {value!r}; it must be relative to data/",
                reason="unsafe-path",
            )
    subdir_parts = path_parts(subdir)
    if subdir_parts and subdir_parts[0] == DATA_DIR:
        del subdir_parts[0]
    name_parts = path_parts(name)
    if not name_parts or name.endswith("/"):
        raise BundleError(LOAD_METADATA, f"{what} has no file name (name {name!r})", reason="no-name")
    parts = subdir_parts + name_parts
    if ".." in parts:
        raise BundleError(
            LOAD_METADATA,
            f"{what} has a '..' component in its path (subdir {subdir!r}, name {name!r})",
            reason="unsafe-path",
        )
    path = "/".join([DATA_DIR, *parts])
    try:
        check_name_limits(path, limits=limits, what=f"the path {_shorten(path)!r} of {what}", task=LOAD_METADATA)
    except BundleError as error:
        raise BundleError(LOAD_METADATA, error.message, reason="name-too-long") from None
    return path


def check_key_template(template: str) -> None:
    """Refuse a key template with an unknown field, attribute access, or format spec (ValueError).

    A template is configuration, not client input, so a bad one is a ValueError at start-up.
    """
    fields = set()
    for _literal, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if field not in KEY_FIELDS or spec or conversion:
            raise ValueError(
                f"archive key template {template!r}: {{{field}}} is not one of "
                f"{', '.join(sorted(KEY_FIELDS))} (no format specs or conversions)"
            )
        fields.add(field)
    if not fields & {"name", "path", "member", "file_id"}:
        raise ValueError(f"archive key template {template!r} names no file ({{name}}, {{path}} or {{file_id}})")
    if "job_id" not in fields:
        # Without the job id, two jobs (or two installations sharing a bucket) write the same keys.
        raise ValueError(f"archive key template {template!r} must contain {{job_id}}")


def check_metadata_key_template(template: str) -> None:
    """The metadata document's key: `{job_id}` and nothing else may be a field (ValueError)."""
    fields = {field for _literal, field, _spec, _conversion in string.Formatter().parse(template) if field is not None}
    if fields != {"job_id"} or "{job_id:" in template or "{job_id!" in template:
        raise ValueError(f"metadata key template {template!r} must contain {{job_id}} and no other field")


def key_length(key: str) -> int:
    """An object key's length as S3 counts it (UTF-8 bytes)."""
    return len(key.encode("utf-8", "surrogatepass"))


def archive_key(
    path: str, *, job_id: int, template: str = DEFAULT_KEY_TEMPLATE, file_id: int | None = None
) -> str:
    """The object key of the file whose member path is `path` (as `entry_path` returns it)."""
    check_key_template(template)
    parts = path.split("/")
    if parts[0] == DATA_DIR:
        parts = parts[1:]
    relative = "/".join(parts)
    values = {
        "job_id": job_id,
        "subdir": "/".join(parts[:-1]),
        "name": parts[-1],
        "path": relative,
        "member": path,
        "file_id": "" if file_id is None else file_id,
    }
    if "{file_id}" in template and file_id is None:
        raise ValueError(f"archive key template {template!r} needs a file_id")
    rendered = template.format_map(values)
    return "/".join(part for part in rendered.split("/") if part)


def _shorten(text: str, limit: int = 80) -> str:
    """A long name cut for an error message: the message names it without being a wall of text."""
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"
