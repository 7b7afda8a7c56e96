"""A local S3 server for the local stack and the tests: Ceph's RADOS Gateway, run as a one-node cluster.

Why RGW: production talks to MinIO (its Helm chart or an existing endpoint), but no MinIO server
binary ships in PyPI, npm or Debian, the only registries our machines reach. Of the S3 servers
that do ship there, RGW (Debian 12's ``radosgw`` 16.2) was the only one that passed every check
the service relies on: real SigV4 (a wrong key gets 403), presigned-URL expiry and tampering,
multipart uploads, DeleteObjects, ListObjectsV2 past 1,000 keys, odd key names, data kept across
restarts. moto keeps objects in memory and accepts any credentials; nanio mangles some key names.
See ``shared/notes/object-store.md`` for the measurements.

How: nothing is installed system-wide. :func:`ensure_installed` downloads the Debian packages
(``apt-get download``) once into a cache outside the repository and unpacks them (``dpkg -x``)
into one folder. :class:`ObjectStore` runs one monitor, one BlueStore OSD on a sparse file and one
gateway, with every file they write (config, data, logs, admin sockets, pid files) under its
``data_dir``; the daemons fork, and are stopped by the pids in their pid files.

If ``INGEST_S3_ENDPOINT`` is set, the local stack uses that endpoint and starts no store: see
:func:`external_endpoint`.

CLI (for debugging, or to run a store by hand)::

    python -m ingest.local.objectstore up --data DIR --port 9000     # foreground; Ctrl-C stops it
    python -m ingest.local.objectstore status --data DIR
    python -m ingest.local.objectstore down --data DIR
    python -m ingest.local.objectstore ceph --data DIR -- -s           # also radosgw-admin, rados
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio
from minio.error import S3Error

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "ObjectStore",
    "DaemonExited",
    "ObjectStoreError",
    "default_cache_dir",
    "ensure_installed",
    "external_endpoint",
    "free_port",
    "main",
]

log = logging.getLogger(__name__)

PACKAGES = ("radosgw", "ceph-mon", "ceph-osd")
REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "ingest-local"
DEFAULT_SECRET_KEY = "ingest-local-secret-key"
S3_UID = "ingest-local"
GIB = 1024**3
#: The OSD's block file: sparse, so only what is written takes disk space; `ingest-local up
#: --store-size` (or INGEST_LOCAL_STORE_SIZE) sets it, and a larger size grows an existing store.
DEFAULT_BLOCK_SIZE = 20 * GIB
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`20G`, `20GiB`, `512M`, `1.5T` or a number of bytes (powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 20G, 512M)")
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))

_MARKER = ".ingest-complete"
_DAEMONS = ("mon.a", "osd.0", "client.rgw.a")  # start order; stopped in reverse
_BINARIES = {"mon.a": "ceph-mon", "osd.0": "ceph-osd", "client.rgw.a": "radosgw"}
_TOOLS = ("radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "ceph", "monmaptool", "ceph-authtool")
_DEBIAN_PYTHON = "/usr/bin/python3.11"  # the ceph CLI is Python, built against Debian's 3.11


class ObjectStoreError(RuntimeError):
    """The store could not be installed, started or stopped; the message says where to look."""


class DaemonExited(ObjectStoreError):
    """A daemon died while the store was starting."""


# --------------------------------------------------------------------------------------------
# Install: Debian packages unpacked into a cache folder
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$INGEST_CACHE_DIR`` or ``~/.cache/pacifica-ingest/ceph``."""
    env = os.environ.get("INGEST_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pacifica-ingest" / "ceph"


def ensure_installed(cache_dir: Path | None = None) -> Path:
    """Download and unpack RGW, the monitor and the OSD once; return the unpacked root folder.

    Idempotent and safe against a half-finished earlier attempt or a concurrent caller: the
    root is built in a temporary folder under a file lock, marked complete, then renamed into
    place, so ``<cache>/root`` either is complete or does not exist.
    """
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
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
                _run(["dpkg", "-x", str(deb), str(staging)])
            missing = [tool for tool in _TOOLS if not (staging / "usr/bin" / tool).exists()]
            if missing:
                raise ObjectStoreError(f"unpacked packages lack {missing} (installed system-wide?)")
            # Catch a missing shared library now, not at the first start.
            _run([str(staging / "usr/bin/radosgw"), "--version"], env=_tool_env(staging))
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
    _run(["apt-get", "update", "-q"], timeout=600)


def _package_list() -> list[str]:
    """``name=version`` for each package ``apt-get install -s`` would install, plus the daemons."""
    try:
        out = _run(["apt-get", "install", "-s", "--no-install-recommends", *PACKAGES]).stdout
    except ObjectStoreError:
        _apt_update()
        out = _run(["apt-get", "install", "-s", "--no-install-recommends", *PACKAGES]).stdout
    wanted = [f"{m[1]}={m[2]}" for m in re.finditer(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", out, re.M)]
    names = {w.split("=", 1)[0] for w in wanted}
    wanted += [p for p in PACKAGES if p not in names]  # installed system-wide: still unpack it
    return wanted


def _apt_download(packages: list[str], dest: Path) -> None:
    cmd = ["apt-get", "download", "-q"]
    if os.geteuid() == 0:
        cmd += ["-o", "APT::Sandbox::User=root"]  # root: no "_apt cannot access" warning
    _run([*cmd, *packages], cwd=dest, timeout=900)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
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


# --------------------------------------------------------------------------------------------
# External endpoint override
# --------------------------------------------------------------------------------------------


def external_endpoint() -> dict[str, object] | None:
    """The S3 endpoint named by ``INGEST_S3_ENDPOINT``, or None when the local store should run.

    Returns ``{"endpoint", "access_key", "secret_key", "secure", "region"}`` (the keyword
    arguments of ``minio.Minio``), read from ``INGEST_S3_ENDPOINT``, ``INGEST_S3_ACCESS_KEY``,
    ``INGEST_S3_SECRET_KEY`` and ``INGEST_S3_SECURE`` (default false). An ``http://`` or
    ``https://`` prefix on the endpoint is stripped and, unless ``INGEST_S3_SECURE`` is set,
    decides ``secure``.
    """
    endpoint = os.environ.get("INGEST_S3_ENDPOINT", "").strip()
    if not endpoint:
        return None
    secure = False
    scheme = re.match(r"(?i)(https?)://", endpoint)
    if scheme:
        secure = scheme[1].lower() == "https"
        endpoint = endpoint[scheme.end() :]
    endpoint = endpoint.rstrip("/")
    flag = os.environ.get("INGEST_S3_SECURE")
    if flag is not None and flag.strip():
        secure = flag.strip().lower() in ("1", "true", "yes", "on")
    return {
        "endpoint": endpoint,
        "access_key": os.environ.get("INGEST_S3_ACCESS_KEY", ""),
        "secret_key": os.environ.get("INGEST_S3_SECRET_KEY", ""),
        "secure": secure,
        "region": REGION,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The one-node cluster
# --------------------------------------------------------------------------------------------


@dataclass
class ObjectStore:
    """One monitor, one OSD and one gateway, all files under ``data_dir``.

    ``start()`` creates the cluster on first use and reuses it afterwards (objects survive
    ``stop()``/``start()``); the S3 user with ``access_key``/``secret_key`` is created or given
    the key if it lacks it. Also a context manager (start on enter, stop on exit).
    """

    data_dir: Path
    port: int
    mon_port: int
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    cache_dir: Path | None = None
    block_size: int = DEFAULT_BLOCK_SIZE  # sparse: only what is written takes disk space
    _root: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()

    # -- public -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_config(self) -> dict[str, object]:
        """Keyword arguments for ``minio.Minio`` (same shape as :func:`external_endpoint`)."""
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "secure": False,
            "region": REGION,
        }

    def start(self, timeout: float = 120.0) -> None:
        """Start the daemons (creating the cluster the first time); return once S3 answers."""
        deadline = time.monotonic() + timeout
        self._root = ensure_installed(self.cache_dir)
        self._check_disk()
        if self.running():
            ports = {k: v for k, v in (self._read_state() or {}).items() if k in ("port", "mon_port")}
            if ports != {"port": self.port, "mon_port": self.mon_port}:
                raise ObjectStoreError(f"{self.data_dir} is already running with {ports}; stop it first")
            self._wait_s3(deadline)
            return
        self.stop()  # a partly running earlier start
        for port in (self.port, self.mon_port):
            if not _port_free(port):
                raise ObjectStoreError(f"port {port} on 127.0.0.1 is in use by another program")
        for sub in ("run", "log"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._start_once(deadline)
        except DaemonExited as exc:  # Ceph daemons now and then trip over a race at init: once more
            self.stop()
            if time.monotonic() > deadline:
                raise
            log.warning("object store: %s; starting again", str(exc).splitlines()[0])
            self._start_once(deadline)

    def _start_once(self, deadline: float) -> None:
        try:
            old = self._read_state()
            if old is None:
                state = self._create(deadline)
            else:
                state = old
                if state["mon_port"] != self.mon_port:
                    self._move_monitor(state)
                self._grow_block()
            self._write_state(state)
            self._write_conf(state)
            for name in _DAEMONS:
                if name not in self.pids():
                    self._start_daemon(name)
            self._wait_s3(deadline)
        except BaseException:
            self.stop()
            raise

    @property
    def _block(self) -> Path:
        return self.data_dir / "osd" / "block"

    def _grow_block(self) -> None:
        """Enlarge the OSD's block file to `block_size` (never shrink it), with the OSD stopped."""
        if "osd.0" in self.pids() or not self._block.exists() or self._block.stat().st_size >= self.block_size:
            return
        old = self._block.stat().st_size
        os.truncate(self._block, self.block_size)
        self._tool("ceph-bluestore-tool", "bluefs-bdev-expand", "--path", str(self.data_dir / "osd"))
        log.info("object store: grew the OSD from %d to %d GiB", old // GIB, self.block_size // GIB)

    def usage(self) -> dict[str, int]:
        """How full the store is: the OSD's size, the bytes its sparse file holds, the host's free disk."""
        size = used = 0
        if self._block.exists():
            stat = self._block.stat()
            size, used = stat.st_size, stat.st_blocks * 512
        free = shutil.disk_usage(self.data_dir).free if self.data_dir.exists() else 0
        return {"size_bytes": size, "used_bytes": used, "host_free_bytes": free}

    def collect_garbage(self) -> None:
        """Reclaim deleted and aborted-multipart data now (the gateway also does so every minute)."""
        self._root = ensure_installed(self.cache_dir)
        self._tool("radosgw-admin", "gc", "process", "--include-all", timeout=600)

    def command(self, tool: str, *args: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment to run ``ceph``, ``radosgw-admin``, ``rados``... against this cluster."""
        self._root = ensure_installed(self.cache_dir)
        if tool == "ceph":
            return [_DEBIAN_PYTHON, str(self._root / "usr/bin/ceph"), "-c", str(self._conf), *args], self._env()
        return [str(self._root / "usr/bin" / tool), "-c", str(self._conf), *args], self._env()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the gateway, then the OSD, then the monitor, by their pid files. Idempotent."""
        for name in reversed(_DAEMONS):
            pid = self._pid(name)
            if pid is not None:
                _terminate(pid, timeout)
            self._pid_file(name).unlink(missing_ok=True)

    def pids(self) -> dict[str, int]:
        """Live daemons by Ceph name (``mon.a``, ``osd.0``, ``client.rgw.a``)."""
        return {name: pid for name in _DAEMONS if (pid := self._pid(name)) is not None}

    def running(self) -> bool:
        return len(self.pids()) == len(_DAEMONS)

    def __enter__(self) -> ObjectStore:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- first start ------------------------------------------------------------------------

    def _create(self, deadline: float) -> dict[str, object]:
        """Make a new monitor and OSD (wiping a half-made earlier attempt); leaves both running.

        The gateway makes its pools when it first starts; the S3 user is made by ``_wait_s3``.
        """
        for sub in ("mon", "osd", "monmap", "keyring", "state.json"):
            path = self.data_dir / sub
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        (self.data_dir / "mon").mkdir()
        (self.data_dir / "osd").mkdir()
        state: dict[str, object] = {"fsid": str(uuid.uuid4()), "osd_uuid": str(uuid.uuid4())}
        self._write_conf(state)
        monmap, keyring = self.data_dir / "monmap", self.data_dir / "keyring"
        self._tool(
            "ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
        )
        self._write_monmap(state, monmap)
        self._tool(
            "ceph-mon", "-c", str(self._conf), "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(keyring)
        )
        self._start_daemon("mon.a")
        osd_id = self._ceph("osd", "create", str(state["osd_uuid"]), deadline=deadline).strip()
        if osd_id != "0":
            raise ObjectStoreError(f"expected OSD id 0, the monitor gave {osd_id!r}")
        # Placed in CRUSH here, not by the OSD at boot: its own mon commands at init race with its
        # monmap ("wrong fsid") now and then, and a failed one makes it exit.
        self._ceph("osd", "crush", "add", "osd.0", "1.0", "root=default", "host=local", deadline=deadline)
        self._tool("ceph-osd", "-c", str(self._conf), "-i", "0", "--mkfs", "--osd-uuid", str(state["osd_uuid"]))
        self._start_daemon("osd.0")
        self._write_state(state)  # from here on, later starts reuse the cluster
        return state

    def _write_monmap(self, state: dict[str, object], monmap: Path) -> None:
        """A one-monitor map: monitor `a` at this store's monitor port."""
        self._tool("monmaptool", "--create", "--clobber", "--add", "a", f"v1:127.0.0.1:{self.mon_port}",
                   "--fsid", str(state["fsid"]), str(monmap))

    def _move_monitor(self, state: dict[str, object]) -> None:
        """The monitor's address is in its monmap: rewrite it for a new ``mon_port``."""
        monmap = self.data_dir / "monmap"
        self._write_monmap(state, monmap)
        self._write_conf(state)
        self._tool("ceph-mon", "-c", str(self._conf), "-i", "a", "--inject-monmap", str(monmap))

    def _ensure_user(self) -> None:
        info = subprocess.run(
            self._cmd("radosgw-admin", "user", "info", f"--uid={S3_UID}"),
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if info.returncode != 0:
            self._tool(
                "radosgw-admin",
                "user",
                "create",
                f"--uid={S3_UID}",
                "--display-name=ingest local",
                f"--access-key={self.access_key}",
                f"--secret={self.secret_key}",
            )
            return
        keys = {k["access_key"]: k["secret_key"] for k in json.loads(info.stdout).get("keys", [])}
        if keys.get(self.access_key) != self.secret_key:
            self._tool(
                "radosgw-admin",
                "key",
                "create",
                f"--uid={S3_UID}",
                "--key-type=s3",
                f"--access-key={self.access_key}",
                f"--secret-key={self.secret_key}",
            )

    # -- waiting ----------------------------------------------------------------------------

    def _wait_s3(self, deadline: float) -> None:
        """Until a signed ListBuckets succeeds; makes the user when the gateway rejects the key."""
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=10), retries=False)
        client = Minio(**self.client_config(), http_client=http)  # type: ignore[arg-type]
        user_checked = False
        last: object = "no answer"
        while True:
            self._check_alive()
            try:
                client.list_buckets()
                return
            except S3Error as exc:
                last = f"{exc.code}: {exc.message}"
                if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch") and not user_checked:
                    self._ensure_user()
                    user_checked = True
                    continue
            except Exception as exc:  # connection refused, reset, 5xx while starting
                last = exc
            if time.monotonic() > deadline:
                raise ObjectStoreError(f"S3 at {self.endpoint} not ready in time ({last}); {self._log_hint()}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        dead = [name for name in _DAEMONS if self._pid_file(name).exists() and self._pid(name) is None]
        if dead:
            raise DaemonExited(f"{', '.join(dead)} exited; {self._log_hint()}")

    def _log_hint(self) -> str:
        tails = []
        for name in _DAEMONS:
            log = self.data_dir / "log" / f"{name}.log"
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()[-5:]
                tails.append(f"--- {log}:\n" + "\n".join(lines))
        return "logs:\n" + "\n".join(tails) if tails else f"no logs in {self.data_dir / 'log'}"

    # -- processes --------------------------------------------------------------------------

    def _start_daemon(self, name: str) -> None:
        kind, _, ident = name.partition(".")
        who = ["-n", name] if kind == "client" else ["-i", ident]
        # The daemons fork; the parent returns once the child has initialised and written its pid.
        # Its output goes to a file, not a pipe, so a child holding the pipe cannot block us.
        out = self.data_dir / "log" / f"{name}.out"
        with open(out, "ab") as fh:
            proc = subprocess.run(
                self._cmd(_BINARIES[name], "-c", str(self._conf), *who),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                timeout=120,
            )
        if proc.returncode != 0:
            raise DaemonExited(f"{name} exited {proc.returncode}; see {out}; {self._log_hint()}")
        if self._pid(name) is None:
            raise DaemonExited(f"{name} did not stay up; {self._log_hint()}")

    def _pid_file(self, name: str) -> Path:
        return self.data_dir / "run" / f"{name}.pid"

    def _pid(self, name: str) -> int | None:
        """The pid in ``name``'s pid file if that process is alive and is this cluster's daemon."""
        try:
            pid = int(self._pid_file(name).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if not _alive(pid) or not cmdline or Path(os.fsdecode(cmdline[0])).name != _BINARIES[name]:
            return None
        return pid if os.fsencode(str(self._conf)) in cmdline else None

    # -- files ------------------------------------------------------------------------------

    @property
    def _conf(self) -> Path:
        return self.data_dir / "ceph.conf"

    def _read_state(self) -> dict[str, object] | None:
        try:
            state = json.loads((self.data_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if {"fsid", "osd_uuid", "mon_port"} <= state.keys() else None

    def _write_state(self, state: dict[str, object]) -> None:
        tmp = self.data_dir / "state.json.tmp"
        tmp.write_text(json.dumps({**state, "mon_port": self.mon_port, "port": self.port}, indent=1) + "\n")
        os.replace(tmp, self.data_dir / "state.json")

    def _write_conf(self, state: dict[str, object]) -> None:
        assert self._root is not None
        lib = self._root / "usr/lib/x86_64-linux-gnu"
        d = self.data_dir
        self._conf.write_text(
            _CONF_TEMPLATE.format(
                fsid=state["fsid"],
                mon_port=self.mon_port,
                port=self.port,
                data=d,
                lib=lib,
                block_size=self.block_size,
                gc_wait=GC_WAIT_SECONDS,
            )
        )

    def _check_disk(self) -> None:
        """The monitor shuts itself down below 5 % free disk; refuse to start near that."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.data_dir)
        if usage.free < 0.06 * usage.total or usage.free < 2 * GIB:
            raise ObjectStoreError(
                f"only {usage.free // 2**20} MiB free under {self.data_dir}: the Ceph monitor stops below 5 %"
            )

    # -- commands ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        assert self._root is not None
        return _tool_env(self._root)

    def _cmd(self, tool: str, *args: str) -> list[str]:
        assert self._root is not None
        exe = self._root / "usr/bin" / tool
        if tool in ("radosgw-admin", "rados"):
            return [str(exe), "-c", str(self._conf), *args]
        return [str(exe), *args]

    def _tool(self, tool: str, *args: str, timeout: float = 120) -> str:
        return _run(self._cmd(tool, *args), env=self._env(), timeout=timeout).stdout

    def _ceph(self, *args: str, deadline: float) -> str:
        assert self._root is not None
        if not Path(_DEBIAN_PYTHON).exists():
            raise ObjectStoreError(f"the ceph CLI needs Debian's {_DEBIAN_PYTHON} (apt-get install python3.11)")
        left = max(5, int(deadline - time.monotonic()))
        cmd = [
            _DEBIAN_PYTHON,
            str(self._root / "usr/bin/ceph"),
            "-c",
            str(self._conf),
            f"--connect-timeout={left}",
            *args,
        ]
        while True:
            try:
                return _run(cmd, env=self._env(), timeout=left + 10).stdout
            except ObjectStoreError as error:
                # A monitor that is still settling (election, first paxos rounds) refuses commands
                # with EPERM "problem getting command descriptions"; it answers a moment later.
                if "command descriptions" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _tool_env(root: Path) -> dict[str, str]:
    """The environment in which the unpacked binaries find their libraries and Python modules."""
    env = dict(os.environ)
    libs = [root / "usr/lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu/ceph", root / "lib/x86_64-linux-gnu"]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, libs), *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PATH"] = os.pathsep.join([str(root / "usr/bin"), str(root / "usr/sbin"), env.get("PATH", "")])
    env["PYTHONPATH"] = str(root / "usr/lib/python3/dist-packages")
    env.pop("CEPH_CONF", None)
    env.pop("CEPH_ARGS", None)
    return env


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemons do: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (nobody may reap a daemon's orphan here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > end:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 5
        time.sleep(0.05)


GC_WAIT_SECONDS = 60  # deleted and aborted-multipart data is reclaimed within ~2 minutes

_CONF_TEMPLATE = """\
# Written by ingest/local/objectstore.py on every start: edits are lost.
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {data}/run
pid file = {data}/run/$name.pid
admin socket = {data}/run/$name.asok
log file = {data}/log/$name.log
mon cluster log file = {data}/log/cluster.log
keyring = {data}/keyring
erasure code dir = {lib}/ceph/erasure-code
plugin dir = {lib}/ceph
osd class dir = {lib}/rados-classes
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
# One monitor: commit map changes at once instead of batching them for a second (pool creation).
paxos propose interval = 0.05
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
# The monitor warns below this free disk (default 30 %); it stops below mon data avail crit (5 %).
mon data avail warn = 10
osd crush chooseleaf type = 0
debug ms = 0

[mon]
mon data = {data}/mon

[osd]
osd data = {data}/osd
osd crush update on start = false
osd class update on start = false
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {block_size}
bluestore fsck on mount = false
bluestore fsck on mkfs = false
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728

[client]
admin socket =
log file = {data}/log/$name.log

[client.rgw.a]
admin socket = {data}/run/$name.asok
rgw frontends = beast endpoint=127.0.0.1:{port}
rgw thread pool size = 64
rgw gc obj min wait = {gc_wait}
rgw gc processor period = {gc_wait}
rgw gc processor max time = {gc_wait}
rgw enable usage log = false
"""


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.local.objectstore", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "ceph", "radosgw-admin", "rados"),
        help="up (foreground), down, status; or run a Ceph tool against the cluster",
    )
    parser.add_argument("--data", type=Path, required=True, help="cluster folder (created on first up)")
    parser.add_argument("--port", type=int, help="S3 port (default: last used, else 9000)")
    parser.add_argument("--mon-port", type=int, help="monitor port (default: last used, else a free port)")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--cache-dir", type=Path, help="package cache (default: $INGEST_CACHE_DIR or ~/.cache/...)")
    parser.add_argument("--timeout", type=float, default=180.0)
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.args = argv[split + 1 :]  # for ceph/radosgw-admin/rados

    try:
        last = json.loads((args.data / "state.json").read_text())
    except (OSError, ValueError):
        last = {}
    store = ObjectStore(
        data_dir=args.data,
        port=args.port or last.get("port") or 9000,
        mon_port=args.mon_port or last.get("mon_port") or free_port(),
        access_key=args.access_key,
        secret_key=args.secret_key,
        cache_dir=args.cache_dir,
    )
    if args.command == "down":
        store.stop()
        print("stopped")
        return 0
    if args.command in ("ceph", "radosgw-admin", "rados"):
        cmd, env = store.command(args.command, *args.args)
        return subprocess.run(cmd, env=env).returncode
    if args.command == "status":
        pids = store.pids()
        print(json.dumps({"running": store.running(), "endpoint": store.endpoint, "pids": pids}, indent=1))
        return 0 if pids else 3

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        store.start(timeout=args.timeout)
        print(
            f"S3 at http://{store.endpoint} (region {REGION}) access key {store.access_key!r}, "
            f"secret key {store.secret_key!r}; up in {time.monotonic() - t0:.1f} s; Ctrl-C stops it",
            flush=True,
        )
        while not stop.wait(1.0):
            if not store.running():
                print(f"a daemon exited: {store.pids()}", file=sys.stderr)
                return 1
        return 0
    except ObjectStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.stop()


if __name__ == "__main__":
    sys.exit(main())
