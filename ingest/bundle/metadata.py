"""metadata.txt (and the /move document): parse, validate, and write back with ids.

A metadata document is a JSON list of objects, each with a `destinationTable`. Pacifica's known
tables are `Transactions.submitter|project|instrument` (`value`), `TransactionKeyValue`,
`FileKeyValue` and `Files`; unknown tables pass through untouched, and the original list is kept
so the final document is the client's document plus ids, as upstream writes it.

Which step a problem fails (see `errors.py` for the rule):

* `load metadata`: no metadata.txt, too big, not UTF-8, not JSON (with line and column), nested
  too deep, not a list of objects, an item without `destinationTable`, an object with a key twice
  (readers disagree on which one wins, so the policy service could judge a different document
  than the one we store), NaN/Infinity (not JSON, cannot be written back), two values for one
  `Transactions.*` field, a Files entry missing `name`/`subdir`/`size`/`hashtype`/`hashsum` or
  with a field of the wrong type, an unsafe path (see `names.py`), two entries naming one file,
  a `mimetype` that cannot be a Content-Type header, an unknown `hashtype`, a `hashsum` that
  cannot be a digest of that type, a string with a lone UTF-16 surrogate.
* `move files`: a /move Files entry without a usable `source`.

Problems of the document as a whole stop at the first. Problems of Files entries are all
collected: the error lists every bad entry (`BundleError.problems`), so the scientist fixes them
in one go. All `load metadata` problems of a document are reported before any later-step problem,
because the worker fails the job at the first step that has one.

Deeply nested JSON cannot exhaust the stack: the C decoder raises RecursionError, which becomes a
`load metadata` error, and the depth limit is checked iteratively after decoding.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final

from ingest.jobs import LOAD_METADATA, MOVE_FILES

from .digests import normalise_hashsum, normalise_hashtype
from .errors import BundleError, Problem
from .limits import DEFAULT_LIMITS, Limits
from .names import DEFAULT_KEY_TEMPLATE, archive_key, entry_path

FILES_TABLE: Final = "Files"
TRANSACTION_PREFIX: Final = "Transactions."
TRANSACTION_ID_TABLE: Final = "Transactions._id"
REQUIRED_FILE_FIELDS: Final = ("name", "subdir", "size", "hashtype", "hashsum")
# A mimetype becomes the object's Content-Type header: printable ASCII only (no CR/LF injection).
MAX_MIMETYPE_LENGTH: Final = 255
_PRINTABLE_ASCII: Final = re.compile(r"[\x20-\x7e]*")
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True, slots=True)
class FileEntry:
    """One Files entry, validated.

    `index` is the entry's position in `Manifest.document`; `path` is its member path
    `data/<subdir>/<name>` (normalised); `hashtype` is canonical (lower case) and `hashsum` lower
    case. `source` is set for /move documents only.
    """

    index: int
    name: str
    subdir: str
    path: str
    size: int
    hashtype: str
    hashsum: str
    mimetype: str | None = None
    source: str | None = None

    @property
    def label(self) -> str:
        """How error messages name the entry: `Files entry 4 ("notes.txt")`."""
        return f"Files entry {self.index} ({json.dumps(self.name, ensure_ascii=False)})"

    def key(self, *, job_id: int, template: str = DEFAULT_KEY_TEMPLATE, file_id: int | None = None) -> str:
        """The entry's object key in the archive bucket (see `names.DEFAULT_KEY_TEMPLATE`)."""
        return archive_key(self.path, job_id=job_id, template=template, file_id=file_id)


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """A validated metadata document.

    `document` is the parsed list exactly as the client sent it (the final document is built from
    it); `files` the Files entries in document order; `transactions` maps the `Transactions.*`
    fields to their values (`{"submitter": 10, "project": "1234a", "instrument": 54}`).
    """

    document: list[dict[str, Any]]
    files: tuple[FileEntry, ...]
    transactions: dict[str, Any]

    @property
    def total_size(self) -> int:
        """Bytes the Files entries declare: the denominator of `ingest files` progress."""
        return sum(entry.size for entry in self.files)


def parse_metadata(raw: bytes | None, limits: Limits = DEFAULT_LIMITS, *, members: int | None = None) -> Manifest:
    """Parse the bytes of a bundle's root metadata.txt (None: the bundle has none).

    `members` is how many members the tar holds, so that an empty tar is named as such."""
    if raw is None:
        why = (
            "the bundle is an empty tar archive (no members)"
            if members == 0
            else "the bundle has no metadata.txt at its root"
        )
        raise BundleError(LOAD_METADATA, f"metadata.txt not found: {why}")
    return _parse(raw, limits=limits, source_name="metadata.txt", move=False)


def parse_move_document(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Parse a /move document: metadata whose Files entries also carry a `source` path.

    `name`/`subdir` give the file's place in the archive; `source` where it is now. Whether the
    source exists and lies under an allowed root is the worker's business, not this pure module's.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return _parse(raw, limits=limits, source_name="the move document", move=True)


def final_document(manifest: Manifest, job_id: int, file_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The metadata document after ingest, as upstream writes it.

    Every Files entry gets its `_id` (from the block of ids the job reserved, in entry order) and
    `{"destinationTable": "Transactions._id", "value": job_id}` is appended. A `Transactions._id`
    the client sent is dropped: the service assigns the transaction id. The manifest is not
    modified (items are copied).
    """
    if len(file_ids) != len(manifest.files):
        raise ValueError(f"{len(file_ids)} file ids for {len(manifest.files)} Files entries")
    ids = {entry.index: file_id for entry, file_id in zip(manifest.files, file_ids, strict=True)}
    document: list[dict[str, Any]] = []
    for index, item in enumerate(manifest.document):
        if item.get("destinationTable") == TRANSACTION_ID_TABLE:
            continue
        copy = dict(item)
        if index in ids:
            copy["_id"] = ids[index]
        document.append(copy)
    document.append({"destinationTable": TRANSACTION_ID_TABLE, "value": job_id})
    return document


# -- decoding ------------------------------------------------------------------------------------


def _parse(raw: bytes, *, limits: Limits, source_name: str, move: bool) -> Manifest:
    document = _decode(raw, limits=limits, source_name=source_name)
    if not isinstance(document, list):
        raise BundleError(
            LOAD_METADATA, f"{source_name} must be a JSON list of objects, not {_kind(document)}"
        )
    problems: list[Problem] = []  # bad Files entries, all reported together
    later: list[Problem] = []  # problems of a later step (move files), raised once load metadata is clean
    entries = 0
    files: list[FileEntry] = []
    transactions: dict[str, Any] = {}
    seen_paths: dict[str, FileEntry] = {}
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise BundleError(LOAD_METADATA, f"item {index} of {source_name} is {_kind(item)}, not an object")
        table = item.get("destinationTable")
        if table is None:
            raise BundleError(LOAD_METADATA, f"item {index} of {source_name} has no destinationTable")
        if not isinstance(table, str):
            raise BundleError(
                LOAD_METADATA, f"item {index} of {source_name} has a destinationTable that is {_kind(table)}"
            )
        if table == FILES_TABLE:
            entries += 1
            try:
                entry = _file_entry(item, index, limits=limits, move=move, later=later)
            except BundleError as error:
                problems.append(error.problem(_given_path(item, index)))
                continue
            earlier = seen_paths.get(entry.path)
            if earlier is not None:
                problems.append(Problem(
                    entry.path, "duplicate-entry",
                    f"{earlier.label} and {entry.label} of {source_name} both name {entry.path}",
                ))
                continue
            seen_paths[entry.path] = entry
            files.append(entry)
        elif table.startswith(TRANSACTION_PREFIX) and table != TRANSACTION_ID_TABLE:
            field = table[len(TRANSACTION_PREFIX):]
            if "value" not in item:
                raise BundleError(LOAD_METADATA, f"item {index} of {source_name} ({table}) has no value")
            if field in transactions:
                raise BundleError(
                    LOAD_METADATA, f"{source_name} gives {table} twice; refusing an ambiguous document"
                )
            transactions[field] = item["value"]
    limit = limits.max_listed_problems
    if problems:
        raise BundleError.of_files(LOAD_METADATA, problems, total=entries, verb=f"in {source_name} are refused",
                                   limit=limit)
    if later:
        raise BundleError.of_files(MOVE_FILES, later, total=entries, verb="cannot be moved", limit=limit)
    return Manifest(document=document, files=tuple(files), transactions=transactions)


def _decode(raw: bytes, *, limits: Limits, source_name: str) -> Any:
    raw = raw if isinstance(raw, bytes) else bytes(raw)
    if len(raw) > limits.max_metadata_bytes:
        raise BundleError(
            LOAD_METADATA,
            f"{source_name} is {len(raw)} bytes, over the limit of {limits.max_metadata_bytes} bytes "
            "(max_metadata_bytes)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise BundleError(
            LOAD_METADATA, f"{source_name} is not UTF-8 (byte {error.start}, line {line})"
        ) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as some editors write
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object_without_duplicate_keys(source_name),
            parse_constant=_reject_constant(source_name),
            parse_float=_finite_float(source_name),
        )
    except json.JSONDecodeError as error:
        raise BundleError(
            LOAD_METADATA,
            f"{source_name} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise BundleError(LOAD_METADATA, f"{source_name} is not valid JSON: {error}") from None
    except RecursionError:
        raise BundleError(
            LOAD_METADATA,
            f"{source_name} nests deeper than {limits.max_metadata_depth} levels (max_metadata_depth)",
        ) from None
    _check_depth(document, limits=limits, source_name=source_name)
    return document


def _object_without_duplicate_keys(source_name: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _value in pairs:
                if key in seen:
                    raise BundleError(
                        LOAD_METADATA,
                        f"{source_name} has an object with the key {key!r} twice; refusing an ambiguous document",
                    )
                seen.add(key)
        return result

    return hook


def _reject_constant(source_name: str) -> Any:
    def hook(constant: str) -> Any:
        raise BundleError(LOAD_METADATA, f"{source_name} is not valid JSON: {constant} is not a JSON number")

    return hook


def _finite_float(source_name: str) -> Any:
    def hook(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise BundleError(LOAD_METADATA, f"{source_name} has a number out of range: {text[:40]}")
        return value

    return hook


def _check_depth(document: Any, *, limits: Limits, source_name: str) -> None:
    """Depth and lone surrogates, checked iteratively (a document just under the decoder's
    recursion limit cannot overflow us).

    JSON may spell a lone UTF-16 surrogate (`"\\ud800"`); Python decodes it into a `str` that no
    UTF-8 writer accepts, so the final document could never be stored or sent to a peer (the worker
    would crash at `ingest metadata`, after the files were copied). It is refused here instead.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_metadata_depth:
            raise BundleError(
                LOAD_METADATA,
                f"{source_name} nests deeper than {limits.max_metadata_depth} levels (max_metadata_depth)",
            )
        if isinstance(value, dict):
            strings, children = list(value), list(value.values())
        elif isinstance(value, list):
            strings, children = [], value
        else:
            continue
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif isinstance(child, str):
                strings.append(child)
        for text in strings:
            bad = _SURROGATE.search(text)
            if bad:
                before = json.dumps(text[: bad.start()][-40:], ensure_ascii=False)
                raise BundleError(
                    LOAD_METADATA,
                    f"{source_name} has a string with a lone UTF-16 surrogate (\\u{ord(bad.group()):04x} after "
                    f"{before}), which is not a Unicode character",
                )


# -- Files entries -------------------------------------------------------------------------------


def _given_path(item: dict[str, Any], index: int) -> str:
    """How a problem names an entry that has no valid path: the path as the client wrote it."""
    subdir, name = item.get("subdir"), item.get("name")
    if isinstance(name, str) and name and isinstance(subdir, str):
        return "/".join(part for part in ("data", subdir.removeprefix("data/"), name) if part)
    return f"Files entry {index}"


def _file_entry(item: dict[str, Any], index: int, *, limits: Limits, move: bool, later: list[Problem]) -> FileEntry:
    name = item.get("name")
    what = f"Files entry {index}" + (f" ({json.dumps(name, ensure_ascii=False)})" if isinstance(name, str) else "")
    missing = [field for field in REQUIRED_FILE_FIELDS if field not in item or item[field] is None]
    if missing:
        raise BundleError(LOAD_METADATA, f"{what} is missing {', '.join(missing)}", reason="missing-field")
    for field in ("name", "subdir", "hashtype", "hashsum"):
        if not isinstance(item[field], str):
            raise BundleError(LOAD_METADATA, f"{what} has a {field} that is {_kind(item[field])}, not a string",
                              reason="bad-field")
    size = item["size"]
    if type(size) is not int or size < 0:
        raise BundleError(LOAD_METADATA, f"{what} has a size that is not a non-negative integer: {_short_repr(size)}",
                          reason="bad-field")
    subdir: str = item["subdir"]
    path = entry_path(subdir, name, what=what, limits=limits)  # type: ignore[arg-type]

    hashtype = normalise_hashtype(item["hashtype"], what=what)
    hashsum = normalise_hashsum(item["hashsum"], hashtype=hashtype, what=what)

    source = item.get("source")
    if move:
        if not isinstance(source, str) or not source or "\x00" in source:
            detail = (
                "has no source"
                if source is None or source == ""
                else f"has a source that is not a usable path: {_short_repr(source)}"
            )
            later.append(Problem(path, "bad-source", f"{what} {detail}"))
            source = None
    else:
        source = source if isinstance(source, str) else None
    mimetype = item.get("mimetype")
    if isinstance(mimetype, str) and (len(mimetype) > MAX_MIMETYPE_LENGTH or not _PRINTABLE_ASCII.fullmatch(mimetype)):
        raise BundleError(
            LOAD_METADATA,
            f"{what} has a mimetype that cannot be a Content-Type (printable ASCII, at most "
            f"{MAX_MIMETYPE_LENGTH} characters): \"{mimetype.encode('unicode_escape').decode()[:80]}\"",
            reason="bad-mimetype",
        )
    return FileEntry(
        index=index,
        name=name,  # type: ignore[arg-type]
        subdir=subdir,
        path=path,
        size=size,
        hashtype=hashtype,
        hashsum=hashsum,
        mimetype=mimetype if isinstance(mimetype, str) else None,
        source=source,
    )


def _kind(value: Any) -> str:
    """A JSON kind for messages: "an object", "a string", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _short_repr(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, (dict, list)) else _kind(value)
    return text if len(text) <= 80 else text[:77] + "..."
