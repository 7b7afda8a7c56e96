"""Bundles: the tar the client uploads and the metadata.txt inside it. Pure logic, no I/O.

The API pushes the upload through a `TarScanner` and stores the resulting `TarIndex`; the worker
loads the index, parses metadata.txt into a `Manifest` (`parse_metadata`), pairs each Files entry
with its member (`match`), reads and hashes the members (`digests.hasher`), stores them under
`FileEntry.key(...)`, and writes `final_document(...)`. Every bad input is a `BundleError` whose
`task` is the Pacifica step to fail. Nothing here touches the network, Kubernetes or storage.
"""
from .digests import ALGORITHMS, DEFAULT_HASHTYPE, hasher, normalise_hashsum, normalise_hashtype
from .errors import BUNDLE_TASKS, BundleError, Problem, summary
from .index import METADATA_NAME, Member, MemberType, TarIndex
from .limits import DEFAULT_LIMITS, Limits
from .memberhash import PREHASH_MIN_SIZE, MemberHasher
from .metadata import FileEntry, Manifest, final_document, parse_metadata, parse_move_document
from .names import (
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_METADATA_KEY_TEMPLATE,
    MAX_KEY_BYTES,
    archive_key,
    check_key_template,
    check_metadata_key_template,
    entry_path,
    normalise_member_name,
)
from .plan import VALIDATE_VERB, VERIFY_VERB, archive_keys, match, pair_members, plan_keys
from .tarstream import TarScanner

__all__ = [
    "ALGORITHMS",
    "BUNDLE_TASKS",
    "DEFAULT_HASHTYPE",
    "DEFAULT_KEY_TEMPLATE",
    "DEFAULT_LIMITS",
    "DEFAULT_METADATA_KEY_TEMPLATE",
    "MAX_KEY_BYTES",
    "METADATA_NAME",
    "PREHASH_MIN_SIZE",
    "Problem",
    "VALIDATE_VERB",
    "VERIFY_VERB",
    "BundleError",
    "FileEntry",
    "Limits",
    "Manifest",
    "Member",
    "MemberHasher",
    "MemberType",
    "TarIndex",
    "TarScanner",
    "archive_key",
    "archive_keys",
    "check_key_template",
    "check_metadata_key_template",
    "entry_path",
    "final_document",
    "hasher",
    "match",
    "normalise_hashsum",
    "normalise_hashtype",
    "normalise_member_name",
    "pair_members",
    "parse_metadata",
    "parse_move_document",
    "plan_keys",
    "summary",
]
