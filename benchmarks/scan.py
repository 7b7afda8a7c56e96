"""`python -m benchmarks.scan`: the API's tar scanner against Python's own tar reader, same run.

The scanner reads every upload's tar headers on the fly, so its speed bounds the API's CPU per
byte staged. The baseline is `tarfile` in stream mode (`r|`) reading the very same bytes in the same
process right after, so a busy machine moves both figures. Also times the tar index's JSON round
trip for 5,000 members (what the API stores and a worker reads). Prints PASS when the scanner is
faster than the baseline.

    python -m benchmarks.scan [--gib 1]
"""
from __future__ import annotations

import argparse
import io
import tarfile
import time

from ingest.bundle import Member, MemberType, TarIndex, TarScanner

END = bytes(1024)


def synthetic_unit(count: int, member_size: int) -> bytes:
    buf = io.BytesIO()
    tar = tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    data = bytes(member_size)
    for n in range(count):
        member = tarfile.TarInfo(f"data/run/f{n}.bin")
        member.size = member_size
        tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()  # no end marker: units are concatenated


class Repeated(io.RawIOBase):
    """`unit` `repeats` times, then the end marker: the scanner's stream, for tarfile to read."""

    def __init__(self, unit: bytes, repeats: int) -> None:
        self.parts = [memoryview(unit)] * repeats + [memoryview(END)]
        self.part = 0
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.part == len(self.parts):
            return 0
        current = self.parts[self.part]
        count = min(len(buffer), len(current) - self.offset)
        buffer[:count] = current[self.offset:self.offset + count]
        self.offset += count
        if self.offset == len(current):
            self.part, self.offset = self.part + 1, 0
        return count


def scan_rate(member_size: int, chunk: int, total: int) -> tuple[float, float, int]:
    """(scanner MB/s, tarfile MB/s, members) over `total` bytes of members of `member_size`."""
    unit = synthetic_unit((8 << 20) // (member_size + 512), member_size)
    repeats = max(1, total // len(unit))
    view = memoryview(unit)
    scanner = TarScanner()
    started = time.perf_counter()
    for _ in range(repeats):
        for at in range(0, len(unit), chunk):
            scanner.feed(view[at : at + chunk])
    scanner.feed(END)
    members = len(scanner.finish().members)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    with tarfile.open(fileobj=io.BufferedReader(Repeated(unit, repeats), 1 << 20), mode="r|") as tar:
        for _member in tar:
            pass
    baseline = time.perf_counter() - started
    size = repeats * len(unit) / 1e6
    return size / elapsed, size / baseline, members


def index_round_trip_seconds(count: int = 5000) -> float:
    members = tuple(Member(f"data/dir/file-{n:05d}.dat", MemberType.FILE, n * 2048, n * 2048 + 512, 1000, "", 0o644,
                           1_700_000_000) for n in range(count))
    index = TarIndex(members=members, metadata=b"[" + b"{}," * count + b"{}]", size=count * 2048 + 1024)
    started = time.perf_counter()
    assert TarIndex.from_json(index.to_json()) == index
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="bytes scanned per case for large members (GiB)")
    args = parser.parse_args()
    worst = True
    for member_size, chunk, total in ((1 << 20, 8 << 20, int(args.gib * (1 << 30))), (4096, 1 << 20, 128 << 20)):
        ours, theirs, members = scan_rate(member_size, chunk, total)
        verdict = "PASS" if ours > theirs else "MISS"
        worst = worst and ours > theirs
        print(f"scan {members} members of {member_size} B in {chunk >> 10} KiB chunks: {ours:.0f} MB/s; "
              f"tarfile r| (baseline, same run): {theirs:.0f} MB/s  {verdict}")
    print(f"tar index JSON round trip, 5,000 members: {index_round_trip_seconds() * 1000:.0f} ms")
    return 0 if worst else 1


if __name__ == "__main__":
    raise SystemExit(main())
