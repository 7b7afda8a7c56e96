"""`ingest-local`: the local stack - Kubernetes API emulator, S3 server, pod runner, operator, API.

`up` runs everything in the foreground (Ctrl-C stops it all); `up --detach` starts everything in
the background, waits until every part answers and writes `.local/stack.json` (and prints it);
`down` stops by pid, idempotently; `status` says what runs and how full the object store is. Data
lives under the stack directory (`.local/` by default) and survives `down`/`up`. Unless
INGEST_MOVE_ROOTS is set, `/move` takes files from the stack's drop folder `<dir>/move/`, so the
README's `/move` example works out of the box. The same `Stack` class is what the integration
tests start, so tests and `make run` exercise one thing.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ingest.local import objectstore

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("kubeapi", "podrunner", "operator", "api")  # start order; stopped in reverse
DEFAULT_PORTS = {"api": 8066, "kubeapi": 8067, "s3": 8068, "mon": 8069, "operator": 8070, "metrics": 8071}
IDENTITIES = {
    "admin": "admin",
    "api": "system:serviceaccount:{namespace}:ingest-api",
    "operator": "system:serviceaccount:{namespace}:ingest-operator",
    "podrunner": "system:node:local",
}


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive: reap it.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)


@dataclasses.dataclass
class Stack:
    directory: Path
    namespace: str = "ingest"
    ports: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PORTS))
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # extra settings for API/operator/workers
    store_size: int = objectstore.DEFAULT_BLOCK_SIZE  # the object store's capacity (its OSD's sparse file)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        self.external = objectstore.external_endpoint()
        self.pids: dict[str, int] = {}
        state = self.read_state()
        if state:
            self.pids = {name: pid for name, pid in state.get("pids", {}).items() if alive(pid)}

    # --- paths and settings ----------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.directory / "stack.json"

    def kubeconfig(self, who: str = "admin") -> Path:
        return self.directory / ("kubeconfig" if who == "admin" else f"kubeconfig-{who}")

    @property
    def kube_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['kubeapi']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def s3(self) -> dict[str, Any]:
        if self.external:
            return dict(self.external)
        secret_file = self.directory / "s3-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(16))
        return {"endpoint": f"127.0.0.1:{self.ports['s3']}", "access_key": "ingest-local",
                "secret_key": secret_file.read_text().strip(), "secure": False, "region": "us-east-1"}

    @property
    def move_root(self) -> Path:
        """The default /move drop folder (used unless INGEST_MOVE_ROOTS is set)."""
        return self.directory / "move"

    def settings_env(self) -> dict[str, str]:
        s3 = self.s3()
        defaults = {}
        if "INGEST_MOVE_ROOTS" not in self.env:
            self.move_root.mkdir(exist_ok=True)
            defaults["INGEST_MOVE_ROOTS"] = str(self.move_root)
        return {
            **defaults,
            "INGEST_NAMESPACE": self.namespace,
            "INGEST_S3_ENDPOINT": s3["endpoint"],
            "INGEST_S3_ACCESS_KEY": s3["access_key"],
            "INGEST_S3_SECRET_KEY": s3["secret_key"],
            "INGEST_S3_SECURE": "true" if s3["secure"] else "false",
            "INGEST_WORKER_SECRET": "ingest-s3",
            **self.env,
        }

    def process_env(self, component: str) -> dict[str, str]:
        env = dict(os.environ) | self.settings_env() | {"PYTHONUNBUFFERED": "1"}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        if component in IDENTITIES:
            env["KUBECONFIG"] = str(self.kubeconfig(component))
        if component == "api":
            env |= {"INGEST_API_HOST": "127.0.0.1", "INGEST_API_PORT": str(self.ports["api"])}
        if component == "operator":  # a stack.json from before the metrics port existed has none
            env["INGEST_OPERATOR_METRICS_PORT"] = str(self.ports.get("metrics", DEFAULT_PORTS["metrics"]))
        return env

    def command(self, component: str) -> list[str]:
        python = sys.executable
        return {
            "kubeapi": [python, "-m", "ingest.local.kubeapi", "--host", "127.0.0.1",
                        "--port", str(self.ports["kubeapi"]), "--crds", str(REPO / "crds"),
                        "--data", str(self.directory / "kubeapi.json")],
            "podrunner": [python, "-m", "ingest.local.podrunner", "--kubeconfig", str(self.kubeconfig("podrunner")),
                          "--namespace", self.namespace, "--workdir", str(self.directory / "pods")],
            "operator": [python, "-m", "ingest.operator", "--liveness", f"http://127.0.0.1:{self.ports['operator']}/healthz"],
            "api": [python, "-m", "ingest.api"],
        }[component]

    def ready(self, component: str) -> bool:
        return {
            "kubeapi": lambda: http_ok(f"{self.kube_url}/version"),
            "podrunner": lambda: True,
            "operator": lambda: http_ok(f"http://127.0.0.1:{self.ports['operator']}/healthz"),
            "api": lambda: http_ok(f"{self.api_url}/readyz"),
        }[component]()

    # --- kubeconfigs and cluster objects ----------------------------------------------------
    def write_kubeconfigs(self) -> None:
        for who, user in IDENTITIES.items():
            name = user.format(namespace=self.namespace)
            config = {
                "apiVersion": "v1", "kind": "Config", "current-context": "ingest-local",
                "clusters": [{"name": "ingest-local", "cluster": {"server": self.kube_url}}],
                "users": [{"name": name, "user": {"token": name}}],
                "contexts": [{"name": "ingest-local",
                              "context": {"cluster": "ingest-local", "user": name, "namespace": self.namespace}}],
            }
            self.kubeconfig(who).write_text(yaml.safe_dump(config))

    def seed_cluster(self) -> None:
        """The namespace and the Secret worker Pods take their object-store credentials from."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig()), client_configuration=configuration)
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        with contextlib.suppress(kubernetes.client.exceptions.ApiException):
            core.create_namespace({"metadata": {"name": self.namespace}})
        env = self.settings_env()
        data = {key: base64.b64encode(env[key].encode()).decode()
                for key in ("INGEST_S3_ACCESS_KEY", "INGEST_S3_SECRET_KEY")}
        secret = {"metadata": {"name": "ingest-s3"}, "type": "Opaque", "data": data}
        try:
            core.create_namespaced_secret(self.namespace, secret)
        except kubernetes.client.exceptions.ApiException:
            core.replace_namespaced_secret("ingest-s3", self.namespace, secret)

    # --- processes --------------------------------------------------------------------------
    def object_store(self) -> objectstore.ObjectStore:
        s3 = self.s3()
        return objectstore.ObjectStore(self.directory / "s3", port=self.ports["s3"], mon_port=self.ports["mon"],
                                       access_key=s3["access_key"], secret_key=s3["secret_key"],
                                       block_size=self.store_size)

    def start(self, component: str, timeout: float = 60.0) -> None:
        if alive(self.pids.get(component)):
            return
        log = open(self.directory / "logs" / f"{component}.log", "ab")
        process = subprocess.Popen(self.command(component), env=self.process_env(component), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   cwd=self.directory)
        log.close()
        self.pids[component] = process.pid
        deadline = time.monotonic() + timeout
        while not self.ready(component):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{component} exited with {process.returncode}; see {self.directory}/logs/{component}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{component} not ready after {timeout:.0f} s; see {self.directory}/logs/{component}.log")
            time.sleep(0.1)
        self.write_state()

    def stop(self, component: str, grace: float = 10.0) -> None:
        pid = self.pids.pop(component, None)
        if pid:
            stop_pid(pid, grace)
        self.write_state()

    def kill(self, component: str) -> None:
        """SIGKILL, as a crash would: no clean-up runs."""
        pid = self.pids.pop(component, None)
        if pid and alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
        self.write_state()

    def up(self) -> dict[str, Any]:
        started = time.monotonic()
        self.write_kubeconfigs()
        if not self.external:
            self.object_store().start()
        self.start("kubeapi")
        self.seed_cluster()
        for component in COMPONENTS[1:]:
            self.start(component, timeout=120)
        self.write_state()
        state = self.read_state() or {}
        state["startup_seconds"] = round(time.monotonic() - started, 1)
        return state

    def down(self) -> None:
        for component in reversed(COMPONENTS):
            self.stop(component)
        if not self.external:
            self.object_store().stop()
        self.write_state()

    def status(self) -> dict[str, bool]:
        result = {component: alive(self.pids.get(component)) for component in COMPONENTS}
        if not self.external:
            result["s3"] = self.object_store().running()
        return result

    def store_usage(self) -> dict[str, Any]:
        """The local object store's capacity and use (nothing for an external endpoint)."""
        if self.external:
            return {}
        usage = self.object_store().usage()
        size, used = usage["size_bytes"], usage["used_bytes"]
        return {**usage, "used_percent": round(100 * used / size, 1) if size else 0.0}

    # --- the published state ----------------------------------------------------------------
    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def write_state(self) -> None:
        env = self.settings_env()
        pids = dict(self.pids)
        if not self.external:
            pids |= {f"s3-{name}": pid for name, pid in self.object_store().pids().items()}
        state = {
            "api_url": self.api_url,
            "kubeconfig": str(self.kubeconfig()),
            "kube_url": self.kube_url,
            "namespace": self.namespace,
            "s3": {
                "endpoint": env["INGEST_S3_ENDPOINT"], "access_key": env["INGEST_S3_ACCESS_KEY"],
                "secret_key": env["INGEST_S3_SECRET_KEY"], "secure": env["INGEST_S3_SECURE"] == "true",
                "region": "us-east-1",
                "staging_bucket": env.get("INGEST_STAGING_BUCKET", "ingest-staging"),
                "archive_bucket": env.get("INGEST_ARCHIVE_BUCKET", "ingest-archive"),
            },
            "move_roots": [root for root in env.get("INGEST_MOVE_ROOTS", "").split(":") if root],
            "policy_url": env.get("POLICY_INGEST_URL", ""),
            "metadata_url": env.get("METADATA_INGEST_URL", ""),
            "ports": self.ports,
            "store_size": self.store_size,
            "env": self.env,
            "directory": str(self.directory),
            "logs": str(self.directory / "logs"),
            "pids": pids,
        }
        self.state_file.write_text(json.dumps(state, indent=2))


def parse_ports(text: str | None) -> dict[str, int]:
    """`api=8066,kubeapi=8067,...`, `auto` (free ports), or the defaults; INGEST_LOCAL_<NAME>_PORT too."""
    ports = {name: int(os.environ.get(f"INGEST_LOCAL_{name.upper()}_PORT", port))
             for name, port in DEFAULT_PORTS.items()}
    if text == "auto":
        return {name: objectstore.free_port() for name in DEFAULT_PORTS}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        if name not in ports:
            raise SystemExit(f"unknown port name {name!r}; known: {', '.join(ports)}")
        ports[name] = int(value)
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest-local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=os.environ.get("INGEST_LOCAL_DIR", ".local"),
                        help="stack directory (default .local)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (foreground unless --detach)")
    up.add_argument("--detach", action="store_true", help="start in the background and return when ready")
    up.add_argument("--ports", help="api=8066,kubeapi=8067,s3=8068,mon=8069,operator=8070 or auto")
    up.add_argument("--namespace", default="ingest")
    up.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the service (repeatable)")
    up.add_argument("--store-size", type=objectstore.parse_size, metavar="SIZE",
                    help="object store capacity, e.g. 50G "
                         "(default: last used, else $INGEST_LOCAL_STORE_SIZE, else 20G); "
                         "a larger size grows an existing store")
    commands.add_parser("down", help="stop every process of the stack")
    commands.add_parser("status", help="which parts run")
    args = parser.parse_args(argv)

    directory = Path(args.dir)
    previous = json.loads((directory / "stack.json").read_text()) if (directory / "stack.json").exists() else {}
    if args.command == "up":
        ports = parse_ports(args.ports) if args.ports or not previous else previous["ports"]
        env = previous.get("env", {}) | dict(item.split("=", 1) for item in args.set)
        size = args.store_size or previous.get("store_size") or objectstore.parse_size(
            os.environ.get("INGEST_LOCAL_STORE_SIZE", str(objectstore.DEFAULT_BLOCK_SIZE)))
        stack = Stack(directory, namespace=args.namespace, ports=ports, env=env, store_size=size)
        try:
            state = stack.up()
        except BaseException as error:
            stack.down()
            print(f"ingest-local: could not start the stack: {error}", file=sys.stderr)
            return 1
        print(json.dumps(state, indent=2), flush=True)
        if args.detach:
            return 0
        print(f"ingest-local: API on {stack.api_url}; KUBECONFIG={stack.kubeconfig()}; Ctrl-C stops everything",
              file=sys.stderr, flush=True)
        stopping: list[int] = []
        # Installed explicitly: a shell starting us in the background would leave SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, frame: stopping.append(number))
        while not stopping:
            time.sleep(0.5)
            for component, pid in list(stack.pids.items()):
                if not alive(pid):
                    print(f"ingest-local: {component} exited; see {directory}/logs/{component}.log",
                          file=sys.stderr, flush=True)
                    stack.pids.pop(component)
        stack.down()
        print("ingest-local: stopped", file=sys.stderr)
        return 0
    stack = Stack(directory, namespace=previous.get("namespace", "ingest"),
                  ports=previous.get("ports", dict(DEFAULT_PORTS)), env=previous.get("env", {}),
                  store_size=previous.get("store_size", objectstore.DEFAULT_BLOCK_SIZE))
    if args.command == "down":
        stack.down()
        print("ingest-local: stopped")
        return 0
    status = stack.status()
    usage = stack.store_usage()
    print(json.dumps({**status, **({"object_store": usage} if usage else {})}, indent=2))
    return 0 if all(status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
