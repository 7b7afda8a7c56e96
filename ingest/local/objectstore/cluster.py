"""The one-node Ceph cluster behind the local S3 server: created once, then started and stopped.

``ObjectStore`` runs one monitor, one BlueStore OSD on a sparse file and one gateway (RGW), with
every file they write (config, data, logs, admin sockets, pid files) under its ``data_dir``. The
first start creates the cluster; later starts reuse it, so objects survive a stop. Ceph daemons
now and then trip over a race at init, so a start that sees a daemon die tries once more. The
S3 user is made when the gateway first refuses the key, and given the key if it lacks it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio
from minio.error import S3Error

from . import cephconf
from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, REGION
from .errors import DaemonExited, ObjectStoreError
from .packages import ensure_installed, run, tool_env
from .processes import alive, port_free, terminate

log = logging.getLogger(__name__)

S3_UID = "ingest-local"
GIB = 1024**3
#: The OSD's block file: sparse, so only what is written takes disk space; `ingest-local up
#: --store-size` (or INGEST_LOCAL_STORE_SIZE) sets it, and a larger size grows an existing store.
DEFAULT_BLOCK_SIZE = 20 * GIB
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_DAEMONS = ("mon.a", "osd.0", "client.rgw.a")  # start order; stopped in reverse
_BINARIES = {"mon.a": "ceph-mon", "osd.0": "ceph-osd", "client.rgw.a": "radosgw"}
_DEBIAN_PYTHON = "/usr/bin/python3.11"  # the ceph CLI is Python, built against Debian's 3.11


def parse_size(text: str) -> int:
    """`20G`, `20GiB`, `512M`, `1.5T` or a number of bytes (powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 20G, 512M)")
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))


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
            if not port_free(port):
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
                terminate(pid, timeout)
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
        if not alive(pid) or not cmdline or Path(os.fsdecode(cmdline[0])).name != _BINARIES[name]:
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
        self._conf.write_text(cephconf.render(fsid=str(state["fsid"]), mon_port=self.mon_port, port=self.port,
                                              data=d, lib=lib, block_size=self.block_size))

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
        return tool_env(self._root)

    def _cmd(self, tool: str, *args: str) -> list[str]:
        assert self._root is not None
        exe = self._root / "usr/bin" / tool
        if tool in ("radosgw-admin", "rados"):
            return [str(exe), "-c", str(self._conf), *args]
        return [str(exe), *args]

    def _tool(self, tool: str, *args: str, timeout: float = 120) -> str:
        return run(self._cmd(tool, *args), env=self._env(), timeout=timeout).stdout

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
                return run(cmd, env=self._env(), timeout=left + 10).stdout
            except ObjectStoreError as error:
                # A monitor that is still settling (election, first paxos rounds) refuses commands
                # with EPERM "problem getting command descriptions"; it answers a moment later.
                if "command descriptions" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
