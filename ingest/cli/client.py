"""`ingest`: the scientists' command line, to bundle a directory and upload it to the service.

`ingest bundle DIR -o bundle.tar` writes a Pacifica bundle (`ingest.cli.bundling`); `ingest
upload DIR --url URL` sends the same bytes straight into the HTTP request, with no tar on disk
(`ingest.cli.service`), or, from `--resumable-threshold` up, as a resumable tus upload that
survives dropped connections (`ingest.cli.resumable`).

Exit codes: 0 done (job OK), 1 failed (job FAILED, refused, unreachable), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Final, TextIO, cast

from ingest import jobs
from ingest.bundle import ALGORITHMS, DEFAULT_HASHTYPE
from ingest.cli.bundling import CHUNK, BundleStream, Warn, read_file, scan_tree, skip_bytes, transaction_items
from ingest.cli.errors import ClientError, UsageError
from ingest.cli.progress import Progress
from ingest.cli.resumable import RESUMABLE_THRESHOLD, TUS_CHUNK, upload_resumably
from ingest.cli.service import Service, complete, wait_complete

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

# A subcommand: what `set_defaults(run=...)` stores on the parsed arguments.
Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


# -- the commands ----------------------------------------------------------------------------------


def bundle_stream(args: argparse.Namespace, directory: Path, *, warn: Warn,
                  exclude: Path | None = None) -> BundleStream:
    files = scan_tree(directory, warn=warn, exclude=exclude)
    transaction = transaction_items(submitter=args.submitter, project=args.project, instrument=args.instrument,
                                    key_values=args.kv)
    return BundleStream(files, transaction=transaction, hashtype=args.hashtype or DEFAULT_HASHTYPE)


def command_bundle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = Path(args.directory)
    to_stdout = args.output == "-"
    target = None if to_stdout else Path(args.output)
    def warn(text: str) -> None:
        print(f"ingest: warning: {text}", file=err)

    stream = bundle_stream(args, directory, warn=warn, exclude=target)
    progress = Progress(stream.size, verb="wrote", stream=None if args.quiet else err)
    if target is None:
        write_all(stream, sys.stdout.buffer, progress)
        return EXIT_OK
    # Written beside the target and renamed at the end: an interrupted run leaves no half bundle.
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False)
    try:
        with handle:
            write_all(stream, handle, progress)
        os.replace(handle.name, target)
    except BaseException:
        os.unlink(handle.name)
        raise
    print(f"ingest: wrote {target}: {len(stream.files)} files, {stream.size} bytes", file=err)
    return EXIT_OK


def write_all(stream: BundleStream, handle: IO[bytes], progress: Progress) -> None:
    try:
        for chunk in stream:
            handle.write(chunk)
            progress.advance(len(chunk))
    finally:
        progress.finish()
    handle.flush()


def command_upload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.url:
        raise UsageError("give the service's URL with --url or $INGEST_URL")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout limits --wait; give both")
    service = Service(args.url, token=args.token or None)
    source = Path(args.source)
    body: Iterable[bytes]
    if args.source == "-":
        refuse_bundle_options(args, "a bundle read from stdin")
        body, size = iter(lambda: sys.stdin.buffer.read(CHUNK), b""), None
    elif source.is_dir():
        stream = bundle_stream(args, source, warn=lambda text: print(f"ingest: warning: {text}", file=err))
        body, size = stream, stream.size
    elif source.is_file():
        refuse_bundle_options(args, f"a bundle file ({source})")
        body, size = read_file(source), source.stat().st_size
    else:
        raise UsageError(f"{source} is neither a directory nor a bundle file")
    progress = Progress(size, verb="sent", stream=None if args.quiet else err)
    if args.resume or (size is not None and size >= args.resumable_threshold):
        opener = (lambda offset: read_file(source, offset)) if source.is_file() else \
            (lambda offset: skip_bytes(bundle_stream(args, source, warn=lambda text: None), offset))
        accepted = upload_resumably(service, opener, size=size or 0, name=source.name, args=args,
                                    progress=progress, err=err)
    else:
        accepted = service.upload(body, size=size, progress=progress)
    job_id = accepted["job_id"]
    if not args.wait:
        print(job_id, file=out)
        return report_failure(accepted, err)
    print(f"ingest: job {job_id} accepted; waiting for it to complete", file=err)
    final = accepted if complete(accepted) else wait_complete(
        service, job_id, timeout=args.timeout, stream=None if args.quiet else err)
    print(json.dumps(final, indent=2), file=out)
    return report_failure(final, err)


def report_failure(document: dict[str, Any], err: TextIO) -> int:
    if document.get("state") == jobs.OK:
        return EXIT_OK
    print(f"ingest: job {document.get('job_id')} {document.get('state')} at {document.get('task')!r}: "
          f"{document.get('exception') or '(no reason given)'}", file=err)
    return EXIT_FAILED


def refuse_bundle_options(args: argparse.Namespace, what: str) -> None:
    given = [flag for flag, value in (("--hashtype", args.hashtype), ("--submitter", args.submitter),
                                      ("--project", args.project), ("--instrument", args.instrument),
                                      ("--kv", args.kv)) if value]
    if given:
        raise UsageError(f"{', '.join(given)} describe a directory to bundle; {what} already has its metadata.txt")


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def size_argument(text: str) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = (text[:-1], units[text[-1].upper()]) if text[-1:].upper() in units else (text, 1)
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected a size like 64M, got {text!r}")
    return int(number) * unit


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ingest", description="Bundle a directory as a Pacifica bundle and upload it to the ingest service.",
        epilog="Exit codes: 0 done, 1 failed (job FAILED, refused, service unreachable), 2 usage error.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bundle_options = argparse.ArgumentParser(add_help=False)
    group = bundle_options.add_argument_group("bundle options (for a directory)")
    group.add_argument("--hashtype", choices=sorted(ALGORITHMS), metavar="HASH",
                       help=f"checksum of each file (default {DEFAULT_HASHTYPE}; also md5, sha256, sha512, ...)")
    group.add_argument("--submitter", help="Transactions.submitter (a user id; digits are sent as a number)")
    group.add_argument("--project", help="Transactions.project (sent as a string)")
    group.add_argument("--instrument", help="Transactions.instrument (an instrument id; digits are sent as a number)")
    group.add_argument("--kv", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="a TransactionKeyValue entry; repeat for more")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")

    bundle = commands.add_parser(
        "bundle", parents=[bundle_options, quiet], help="write a bundle of a directory to a tar file",
        description="Write every regular file under DIR as data/<relative path> into a Pacifica bundle (an "
                    "uncompressed tar), with metadata.txt last. Symbolic links are skipped with a warning.")
    bundle.add_argument("directory", metavar="DIR", help="the directory whose files to bundle")
    bundle.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write ('-' for stdout)")
    bundle.set_defaults(run=command_bundle)

    upload = commands.add_parser(
        "upload", parents=[bundle_options, quiet], help="upload a directory or a bundle file; print the job id",
        description="Upload DIR (bundled on the fly, nothing written to disk) or a bundle file ('-' reads one "
                    "from stdin) to the ingest service. Prints the job id; with --wait, follows the job and prints "
                    "its final state document as JSON.")
    upload.add_argument("source", metavar="DIR|BUNDLE", help="a directory to bundle on the fly, or a bundle tar file")
    upload.add_argument("--url", default=os.environ.get("INGEST_URL"),
                        help="the service's base URL, e.g. http://ingest.example.org:8066 (default $INGEST_URL)")
    upload.add_argument("--token", default=os.environ.get("INGEST_TOKEN"),
                        help="bearer token for the service (default $INGEST_TOKEN, which other users cannot see in ps)")
    upload.add_argument("--wait", action="store_true", help="poll the job once a second until it is complete; "
                        "exit 0 if it ended OK, 1 if it FAILED")
    upload.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --wait, give up waiting after this long (exit 1; the job goes on)")
    upload.add_argument("--resumable-threshold", type=size_argument, default=RESUMABLE_THRESHOLD, metavar="BYTES",
                        help="send bundles of at least this size (default 64M) as a resumable tus upload, which "
                        "survives dropped connections")
    upload.add_argument("--chunk-size", type=size_argument, default=TUS_CHUNK, metavar="BYTES",
                        help="bytes per PATCH of a resumable upload (default 1G; streamed, not held in memory; "
                        "lower it behind a proxy that limits request bodies)")
    upload.add_argument("--resume", metavar="URL",
                        help="continue the resumable upload at URL (printed when it started) with the same DIR|BUNDLE")
    upload.set_defaults(run=command_upload)
    return root


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)  # exits 2 on a usage error
    try:
        run = cast(Command, args.run)  # argparse.Namespace attributes are untyped
        return run(args, out, err)
    except UsageError as error:
        print(f"ingest: {error}", file=err)
        return EXIT_USAGE
    except ClientError as error:
        print(f"ingest: {error}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ingest: interrupted", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
