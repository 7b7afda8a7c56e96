"""The HTTP face of the emulator: Kubernetes URLs, verbs, content types and watch streams.

One Starlette route catches every Kubernetes path; :func:`parse_path` turns it into a
:class:`RequestInfo` (verb, group, version, resource, subresource, namespace, name) the way the
real server's request-info resolver does, and the handler calls :class:`~.cluster.Cluster`.
Every request, successful or not, is recorded in the :class:`~.requestlog.RequestLog` under the
bearer token as the user name.

Watches are a small ASGI response of their own (:class:`WatchStream`): it writes newline-delimited
JSON events as the store's fan-out queues them, sends BOOKMARKs when asked, honours
``timeoutSeconds``, and listens for the client's disconnect so a closed watch unsubscribes at
once instead of lingering until its next event.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import admission, discovery, errors, patching
from .cluster import Cluster
from .errors import ApiError
from .requestlog import RequestLog
from .resources import Resource
from .store import Body, Event, Watcher, encode

DEFAULT_WATCH_TIMEOUT = 1800.0
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclasses.dataclass
class RequestInfo:
    verb: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    discovery: str = ""  # "api", "apis", "group", "groupversion" for discovery paths


def parse_path(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    info = RequestInfo()
    if not parts or parts[0] not in ("api", "apis"):
        info.verb = method.lower()
        info.discovery = "other"
        return info
    if parts[0] == "api":
        if len(parts) == 1:
            info.discovery, info.verb = "api", "get"
            return info
        info.version, rest = parts[1], parts[2:]
    else:
        if len(parts) == 1:
            info.discovery, info.verb = "apis", "get"
            return info
        info.group = parts[1]
        if len(parts) == 2:
            info.discovery, info.verb = "group", "get"
            return info
        info.version, rest = parts[2], parts[3:]
    if not rest:
        info.discovery, info.verb = "groupversion", "get"
        return info
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
            len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES):
        info.namespace, rest = rest[1], rest[2:]
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = "/".join(rest[2:])
    if info.resource == "namespaces" and info.name and not info.namespace:
        info.namespace = ""  # a namespace object itself is cluster-scoped
    collection = not info.name
    watching = query.get("watch", "").lower() in ("1", "true")
    info.verb = {
        "GET": "watch" if watching else ("list" if collection else "get"),
        "POST": "create", "PUT": "update", "PATCH": "patch",
        "DELETE": "deletecollection" if collection else "delete",
    }.get(method, method.lower())
    return info


def user_of(request: Request) -> str:
    """The bearer token is the user name; ``Impersonate-User`` (``kubectl --as``) overrides it.

    client-go never sends credentials to a plain-HTTP server, so kubectl arrives anonymous
    unless it impersonates; the Python client and kopf do send their token.
    """
    impersonated = request.headers.get("impersonate-user", "").strip()
    if impersonated:
        return impersonated
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return "system:anonymous"


def json_response(body: Any, code: int = 200, warnings: list[str] | None = None) -> Response:
    response = Response(encode(body), status_code=code, media_type="application/json")
    for warning in warnings or []:
        response.headers.append("Warning", f'299 - {json.dumps(warning)}')
    return response


def _accepts(request: Request, what: str) -> bool:
    return f"as={what}" in request.headers.get("accept", "").replace(" ", "")


class Api:
    """The request handler; holds the cluster, the request log and cached discovery docs."""

    def __init__(self, cluster: Cluster, log: RequestLog, *, bookmark_interval: float = 30.0,
                 address: str = "127.0.0.1:6443") -> None:
        self.cluster = cluster
        self.log = log
        self.bookmark_interval = bookmark_interval
        self.address = address
        self.streams: set[WatchStream] = set()
        self._openapi_cache: tuple[int, dict[str, bytes], dict[str, str]] | None = None

    # -- entry points ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response | WatchStream:
        query = dict(request.query_params)
        info = parse_path(request.method, request.url.path, query)
        user = user_of(request)
        code = 500
        try:
            response = await self._dispatch(request, info, query)
            code = response.status_code
            return response
        except ApiError as exc:
            code = exc.code
            return json_response(exc.status(), exc.code)
        except Exception as exc:  # a bug here must still look like a Kubernetes error
            code = 500
            return json_response(ApiError(500, "InternalError",
                                          f"Internal error occurred: {exc!r}").status(), 500)
        finally:
            self.log.record(user=user, verb=info.verb, group=info.group, version=info.version,
                            resource=info.resource, subresource=info.subresource,
                            namespace=info.namespace, name=info.name,
                            user_agent=request.headers.get("user-agent", ""), code=code,
                            path=request.url.path)

    async def requests_log(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.log.clear()
            return json_response({"cleared": True})
        return json_response(self.log.snapshot())

    async def stats(self, request: Request) -> Response:
        store = self.cluster.store
        return json_response({"resourceVersion": store.rv, "writes": store.writes,
                              "watchers": store.watcher_count(), "streams": len(self.streams),
                              "history": store.history_size()})

    # -- dispatch --------------------------------------------------------------------------
    async def _dispatch(self, request: Request, info: RequestInfo, query: dict[str, str]) -> Any:
        if info.discovery:
            return self._discovery(request, info)
        if not info.resource or info.version == "":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = self.cluster.resolve(info.group, info.version, info.resource)
        ns = info.namespace or None
        if res.namespaced and info.name and ns is None and res.plural != "namespaces":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not res.namespaced and info.namespace:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        sub = info.subresource or None
        dry_run = query.get("dryRun") == "All"
        validation = query.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f"fieldValidation parameter unsupported: {validation}, valid values: "
                "Strict, Warn, Ignore")
        verb = info.verb
        if verb == "get":
            if sub:
                admission.check_subresource(res, sub)
            obj = self.cluster.get(res, ns, info.name)
            if _accepts(request, "Table"):
                return json_response(discovery.table(
                    res, [obj], resource_version=obj["metadata"].get("resourceVersion", ""),
                    include=query.get("includeObject", "Metadata")))
            if _accepts(request, "PartialObjectMetadata"):
                return json_response(_partial(obj))
            return json_response(obj)
        if verb == "list":
            return self._list(request, res, ns, query)
        if verb == "watch":
            return self._watch(request, res, ns, query)
        if verb == "create":
            if sub:
                raise errors.method_not_allowed()
            body = await self._body(request)
            obj, warnings = self.cluster.create(res, ns, body, dry_run=dry_run,
                                                validation=validation)
            return json_response(obj, 201, warnings)
        if verb == "update":
            body = await self._body(request)
            obj, warnings = self.cluster.update(res, ns, info.name, body, subresource=sub,
                                                dry_run=dry_run, validation=validation)
            return json_response(obj, 200, warnings)
        if verb == "patch":
            kind = patching.patch_type(request.headers.get("content-type", ""))
            if kind is None or kind == "apply-cbor":
                raise errors.unsupported_media_type(
                    request.headers.get("content-type", ""), list(patching.PATCH_TYPES)[:4])
            raw = await request.body()
            try:
                patch = yaml.safe_load(raw) if kind == "apply" else json.loads(raw or b"null")
            except (ValueError, yaml.YAMLError) as exc:
                raise errors.bad_request(f"error decoding patch: {exc}") from None
            if kind == "apply" and not query.get("fieldManager"):
                raise errors.invalid("", "", "", [errors.Cause(
                    "FieldValueRequired", "fieldManager",
                    "Required value: is required for apply patch")])
            obj, warnings, created = self.cluster.patch(
                res, ns, info.name, kind, patch, subresource=sub, dry_run=dry_run,
                validation=validation, force=query.get("force") == "true")
            return json_response(obj, 201 if created else 200, warnings)
        if verb == "delete":
            options = await self._delete_options(request, query)
            body = self.cluster.delete(res, ns, info.name, options, dry_run=dry_run)
            return json_response(body, 200)
        if verb == "deletecollection":
            options = await self._delete_options(request, query)
            body = self.cluster.delete_collection(
                res, ns, options, label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"), dry_run=dry_run)
            return json_response(body, 200)
        raise errors.method_not_allowed()

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        content_type = request.headers.get("content-type", "application/json").split(";")[0]
        try:
            if content_type in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from None

    async def _delete_options(self, request: Request, query: dict[str, str]) -> Body:
        options: Body = {}
        raw = await request.body()
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(f"invalid DeleteOptions: {exc}") from None
            if not isinstance(options, dict):
                raise errors.bad_request("invalid DeleteOptions")
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "gracePeriodSeconds" in query:
            try:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if query.get("orphanDependents") == "true":
            options["orphanDependents"] = True
        return options

    # -- list and watch --------------------------------------------------------------------
    def _list(self, request: Request, res: Resource, ns: str | None, query: dict[str, str]) -> Response:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise errors.bad_request("limit must be an integer") from None
        body = self.cluster.list(res, ns, label_selector=query.get("labelSelector"),
                                 field_selector=query.get("fieldSelector"), limit=limit,
                                 continue_token=query.get("continue"),
                                 resource_version=query.get("resourceVersion"),
                                 resource_version_match=query.get("resourceVersionMatch"))
        if _accepts(request, "Table"):
            return json_response(discovery.table(
                res, body["items"], resource_version=body["metadata"]["resourceVersion"],
                include=query.get("includeObject", "Metadata"),
                continue_token=body["metadata"].get("continue")))
        if _accepts(request, "PartialObjectMetadataList"):
            return json_response({"kind": "PartialObjectMetadataList",
                                  "apiVersion": "meta.k8s.io/v1", "metadata": body["metadata"],
                                  "items": [_partial(o) for o in body["items"]]})
        return json_response(body)

    def _watch(self, request: Request, res: Resource, ns: str | None,
               query: dict[str, str]) -> WatchStream:
        store = self.cluster.store
        match = self.cluster.matcher(res, query.get("labelSelector"), query.get("fieldSelector"))
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        initial_events = query.get("sendInitialEvents", "").lower() in ("1", "true")
        rv_text = query.get("resourceVersion", "")
        if initial_events:
            if query.get("resourceVersionMatch") != "NotOlderThan":
                raise errors.invalid("", "", "", [errors.Cause(
                    "FieldValueForbidden", "resourceVersionMatch",
                    "Forbidden: sendInitialEvents requires setting resourceVersionMatch to "
                    "NotOlderThan")])
            if not bookmarks:
                raise errors.invalid("", "", "", [errors.Cause(
                    "FieldValueForbidden", "allowWatchBookmarks",
                    "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true")])
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else DEFAULT_WATCH_TIMEOUT
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be a number") from None
        try:
            since = int(rv_text) if rv_text else 0
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{rv_text}"') from None
        table = _accepts(request, "Table")
        include = query.get("includeObject", "Metadata")
        encoder = (lambda kind, obj: encode({"type": kind, "object": discovery.table(
            res, [obj], resource_version=obj["metadata"].get("resourceVersion", ""),
            include=include)}) + b"\n") if table else None
        snapshot = initial_events or since == 0
        if not snapshot and store.too_old(res.key, since):
            expired = ApiError(410, "Expired", f"too old resource version: {since} "
                                               f"({store.rv})").status()
            lines: list[bytes] = [encode({"type": "ERROR", "object": expired}) + b"\n"]
            return WatchStream(self, None, lines, timeout=0, bookmarks=False, res=res,
                               encoder=encoder)
        # Snapshot, replay and subscribe happen with no await in between (see store.py).
        lines = []
        if snapshot:
            for obj in store.items(res.key, ns):
                if match(obj):
                    lines.append(encoder("ADDED", obj) if encoder else
                                 encode({"type": "ADDED", "object": obj}) + b"\n")
        watcher = store.subscribe(res.key, ns, match, since=None if snapshot else since)
        if initial_events:
            lines.append(encode({"type": "BOOKMARK", "object": _bookmark(
                res, store.rv, initial_end=True)}) + b"\n")
        return WatchStream(self, watcher, lines, timeout=timeout, bookmarks=bookmarks, res=res,
                           encoder=encoder)

    # -- discovery -------------------------------------------------------------------------
    def _discovery(self, request: Request, info: RequestInfo) -> Response:
        registry = self.cluster.registry
        path = request.url.path.rstrip("/")
        if info.discovery == "api":
            return json_response(discovery.api_versions(self.address))
        if info.discovery == "apis":
            return json_response(discovery.api_group_list(registry))
        if info.discovery == "group":
            body = discovery.api_group(registry, info.group)
        elif info.discovery == "groupversion":
            body = discovery.resource_list(registry, info.group, info.version)
        elif path == "/version":
            return json_response(discovery.KUBE_VERSION)
        elif path in ("/healthz", "/livez", "/readyz"):
            return Response(b"ok", media_type="text/plain")
        elif path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return self._openapi(path)
        else:
            body = None
        if body is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           details={})
        return json_response(body)

    def _openapi(self, path: str) -> Response:
        registry = self.cluster.registry
        if self._openapi_cache is None or self._openapi_cache[0] != registry.generation:
            docs: dict[str, bytes] = {}
            hashes: dict[str, str] = {}
            for group, versions in registry.group_versions().items():
                for version in versions:
                    key = discovery.gv_path(group, version)
                    docs[key] = encode(discovery.openapi_doc(registry, group, version))
                    hashes[key] = hashlib.sha512(docs[key]).hexdigest()[:64].upper()
            self._openapi_cache = (registry.generation, docs, hashes)
        _, docs, hashes = self._openapi_cache
        if path == "/openapi/v3":
            return json_response(discovery.openapi_root(registry, hashes))
        doc = docs.get(path[len("/openapi/v3/"):])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Response(doc, media_type="application/json")

    def close_streams(self) -> None:
        """End every open watch (shutdown): clients see a normal end of stream."""
        for stream in list(self.streams):
            stream.close()


def _partial(obj: Body) -> Body:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def _bookmark(res: Resource, rv: int, *, initial_end: bool = False) -> Body:
    meta: Body = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}


class WatchStream:
    """An ASGI response streaming one watch until timeout, disconnect or shutdown."""

    def __init__(self, api: Api, watcher: Watcher | None, initial: list[bytes], *,
                 timeout: float, bookmarks: bool, res: Resource,
                 encoder: Callable[[str, Body], bytes] | None) -> None:
        self.api = api
        self.watcher = watcher
        self.initial = initial
        self.deadline = time.monotonic() + timeout
        self.bookmarks = bookmarks
        self.res = res
        self.encoder = encoder
        self.status_code = 200

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.queue.put_nowait(("CLOSE", None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-cache, private")]})
        self.api.streams.add(self)
        pump = asyncio.ensure_future(self._pump(send))
        listen = asyncio.ensure_future(self._until_disconnect(receive))
        try:
            await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, listen):
                task.cancel()
            await asyncio.gather(pump, listen, return_exceptions=True)
            self.api.streams.discard(self)
            if self.watcher is not None:
                self.api.cluster.store.unsubscribe(self.watcher)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            pass  # the client is gone

    async def _until_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    async def _pump(self, send: Send) -> None:
        if self.initial:
            await send({"type": "http.response.body", "body": b"".join(self.initial),
                        "more_body": True})
            self.initial = []
        if self.watcher is None:
            return
        queue = self.watcher.queue
        interval = self.api.bookmark_interval
        next_bookmark = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                return
            wait = self.deadline - now
            if self.bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            try:
                item = await asyncio.wait_for(queue.get(), timeout=wait)
            except TimeoutError:
                if self.bookmarks and time.monotonic() >= next_bookmark:
                    # Queue empty: every event up to the current version has been sent.
                    line = encode({"type": "BOOKMARK", "object": _bookmark(
                        self.res, self.api.cluster.store.rv)}) + b"\n"
                    await send({"type": "http.response.body", "body": line, "more_body": True})
                    next_bookmark = time.monotonic() + interval
                continue
            chunks: list[bytes] = []
            while True:
                kind, event = item
                if kind == "CLOSE":
                    if chunks:
                        await send({"type": "http.response.body", "body": b"".join(chunks),
                                    "more_body": True})
                    return
                chunks.append(self._line(kind, event))
                if queue.empty() or len(chunks) >= 100:
                    break
                item = queue.get_nowait()
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})

    def _line(self, kind: str, event: Event) -> bytes:
        if self.encoder is not None:
            return self.encoder(kind, event.obj)
        if kind == event.type:
            return event.line()
        return encode({"type": kind, "object": event.obj}) + b"\n"


def build_app(api: Api) -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[
        Route("/_emulator/requests", api.requests_log, methods=["GET", "DELETE"]),
        Route("/_emulator/stats", api.stats, methods=["GET"]),
        Route("/{path:path}", api.handle, methods=methods),
    ])
