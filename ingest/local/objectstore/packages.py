"""Ceph's daemons without installing them: Debian packages downloaded once and unpacked into a cache.

Nothing is installed system-wide. ``ensure_installed`` runs ``apt-get download`` for the packages
the three daemons need (``apt-get install -s`` lists their dependencies) and ``dpkg -x`` into one
folder, built under a file lock in a temporary folder and renamed into place, so the unpacked
root either is complete or does not exist. ``tool_env`` is how the unpacked binaries find their
libraries and Python modules there.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ingest.local import cache as local_cache

from .errors import ObjectStoreError

PACKAGES = ("radosgw", "ceph-mon", "ceph-osd")
_MARKER = ".ingest-complete"
_TOOLS = ("radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "ceph", "monmaptool", "ceph-authtool")


def ensure_installed(cache_dir: Path | None = None) -> Path:
    """Download and unpack RGW, the monitor and the OSD once; return the unpacked root folder.

    Idempotent and safe against a half-finished earlier attempt or a concurrent caller: the
    root is built in a temporary folder under a file lock, marked complete, then renamed into
    place, so ``<cache>/root`` either is complete or does not exist.
    """
    # ``$INGEST_CACHE_DIR`` or ``~/.cache/pacifica-ingest/ceph``
    cache = (cache_dir or local_cache.cache_dir("ceph", variable="INGEST_CACHE_DIR")).expanduser().resolve()
    root = cache / "root"
    if (root / _MARKER).is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if (root / _MARKER).is_file():
            return root
        for stale in cache.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists():  # no marker: left by something else; rebuild it
            shutil.rmtree(root)
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            debs = _download_debs(build / "debs")
            staging = build / "root"
            staging.mkdir()
            for deb in debs:
                run(["dpkg", "-x", str(deb), str(staging)])
            missing = [tool for tool in _TOOLS if not (staging / "usr/bin" / tool).exists()]
            if missing:
                raise ObjectStoreError(f"unpacked packages lack {missing} (installed system-wide?)")
            # Catch a missing shared library now, not at the first start.
            run([str(staging / "usr/bin/radosgw"), "--version"], env=tool_env(staging))
            (staging / _MARKER).write_text(json.dumps(sorted(d.name for d in debs), indent=1) + "\n")
            os.rename(staging, root)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return root


def _download_debs(dest: Path) -> list[Path]:
    """``apt-get download`` the packages the three daemons need; ``apt-get update`` only if needed."""
    dest.mkdir(parents=True)
    if not _apt_lists_present():
        _apt_update()
    try:
        _apt_download(_package_list(), dest)
    except ObjectStoreError:
        _apt_update()  # lists missing or stale (a version vanished from the mirror)
        for partial in dest.iterdir():
            partial.unlink()
        _apt_download(_package_list(), dest)
    debs = sorted(dest.glob("*.deb"))
    if not debs:
        raise ObjectStoreError("apt-get download produced no .deb files")
    return debs


def _apt_lists_present() -> bool:
    return any(Path("/var/lib/apt/lists").glob("*_Packages*"))


def _apt_update() -> None:
    run(["apt-get", "update", "-q"], timeout=600)


def _package_list() -> list[str]:
    """``name=version`` for each package ``apt-get install -s`` would install, plus the daemons."""
    try:
        out = run(["apt-get", "install", "-s", "--no-install-recommends", *PACKAGES]).stdout
    except ObjectStoreError:
        _apt_update()
        out = run(["apt-get", "install", "-s", "--no-install-recommends", *PACKAGES]).stdout
    wanted = [f"{m[1]}={m[2]}" for m in re.finditer(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", out, re.M)]
    names = {w.split("=", 1)[0] for w in wanted}
    wanted += [p for p in PACKAGES if p not in names]  # installed system-wide: still unpack it
    return wanted


def _apt_download(packages: list[str], dest: Path) -> None:
    cmd = ["apt-get", "download", "-q"]
    if os.geteuid() == 0:
        cmd += ["-o", "APT::Sandbox::User=root"]  # root: no "_apt cannot access" warning
    run([*cmd, *packages], cwd=dest, timeout=900)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ObjectStoreError(f"{cmd[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise ObjectStoreError(f"`{' '.join(cmd[:6])}` exited {proc.returncode}: {tail}")
    return proc


def tool_env(root: Path) -> dict[str, str]:
    """The environment in which the unpacked binaries find their libraries and Python modules."""
    env = dict(os.environ)
    libs = [root / "usr/lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu/ceph", root / "lib/x86_64-linux-gnu"]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, libs), *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PATH"] = os.pathsep.join([str(root / "usr/bin"), str(root / "usr/sbin"), env.get("PATH", "")])
    env["PYTHONPATH"] = str(root / "usr/lib/python3/dist-packages")
    env.pop("CEPH_CONF", None)
    env.pop("CEPH_ARGS", None)
    return env
