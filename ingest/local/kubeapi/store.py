"""Objects, resourceVersions and the watch fan-out.

One global counter gives every write its ``resourceVersion`` (as etcd's revision does), so a
list's version orders against every later event of any resource. Objects are stored as plain
dicts and never mutated after they are stored: a write builds a new dict and replaces the entry,
so events and watchers can share references without copying.

Watches are served from a bounded per-resource history (a ``deque``): a watch that resumes from a
version still in the history is replayed from it; one older than the oldest retained event gets
410 Gone, exactly the contract kopf, client-go and kubectl already handle by relisting. Because
the whole server is one asyncio thread and :meth:`Store.subscribe` does its snapshot, replay and
subscription without awaiting, no event can slip between a list and a watch that starts from the
list's version. Each event's JSON is encoded once and shared by every watcher.

The same history makes paginated lists consistent, as etcd's MVCC does for a real server: a
``continue`` token names the version of the first page, and :meth:`Store.snapshot` rebuilds the
objects as they were at that version by undoing the retained events after it. A token older than
the history (the *compaction window*, ``history`` events per resource) cannot be served: 410
Expired, as a real server answers once etcd compacted the revision.

Every resource keeps its keys in a sorted list beside the dict, so a page starts with a bisect
instead of sorting every object on every request: list, watch and get cost what they return, not
what the store holds (100,000 objects are served as fast as 100).

Memory stays flat over a long run: the history is bounded, watchers with full queues are cut off
(a real server does the same to slow watchers), and there are no per-request logs here.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import gc
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

ResourceKey = tuple[str, str, str]  # (group, version, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)
Body = dict[str, Any]

DEFAULT_HISTORY = 2000
WATCH_QUEUE = 10000


def encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@dataclasses.dataclass(eq=False)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    obj: Body
    old: Body | None = None  # the previous state, for selector transitions
    _line: bytes | None = None

    def line(self) -> bytes:
        """The newline-terminated JSON watch event, encoded once for all watchers."""
        if self._line is None:
            self._line = encode({"type": self.type, "object": self.obj}) + b"\n"
        return self._line


Matcher = Callable[[Body], bool]


class Watcher:
    """One open watch: a filter and a queue of (type, object-or-event) items."""

    def __init__(self, resource: ResourceKey, namespace: str | None, matches: Matcher) -> None:
        self.resource = resource
        self.namespace = namespace
        self.matches = matches
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        kind = self._translate(event)
        if kind is None:
            return
        if self.queue.qsize() >= WATCH_QUEUE:
            self.overflowed = True  # the stream ends; the client relists
            self.queue.put_nowait(("CLOSE", None))
            return
        self.queue.put_nowait((kind, event))

    def _translate(self, event: Event) -> str | None:
        """ADDED/MODIFIED/DELETED as seen through this watch's selectors."""
        if self.namespace is not None:
            if (event.obj.get("metadata") or {}).get("namespace", "") != self.namespace:
                return None
        now = self.matches(event.obj)
        if event.type != "MODIFIED":
            return event.type if now else None
        before = event.old is not None and self.matches(event.old)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        if before:
            return "DELETED"
        return None


class Store:
    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        self.rv = 1
        self._objects: dict[ResourceKey, dict[ObjectKey, Body]] = {}
        self._keys: dict[ResourceKey, list[ObjectKey]] = {}  # sorted, like etcd's key order
        self._history: dict[ResourceKey, collections.deque[Event]] = {}
        self._compacted: dict[ResourceKey, int] = {}  # newest rv dropped from the history
        self._watchers: dict[ResourceKey, set[Watcher]] = {}
        self._history_size = history
        # uid -> (resource, object key): GC looks owners and dependents up without scanning.
        self.uids: dict[str, tuple[ResourceKey, ObjectKey]] = {}
        self.dependents: dict[str, set[tuple[ResourceKey, ObjectKey]]] = {}
        self.listeners: list[Callable[[ResourceKey, Event], None]] = []
        self.writes = 0
        self._floor = 0  # versions before a restart cannot be replayed

    # -- reading ---------------------------------------------------------------------------
    def get(self, resource: ResourceKey, key: ObjectKey) -> Body | None:
        return self._objects.get(resource, {}).get(key)

    def items(self, resource: ResourceKey, namespace: str | None = None) -> list[Body]:
        """Objects sorted by (namespace, name), like etcd's key order."""
        bucket = self._objects.get(resource, {})
        return [bucket[k] for k in self._key_range(resource, namespace)]

    def _key_range(self, resource: ResourceKey, namespace: str | None,
                   after: ObjectKey | None = None) -> Iterator[ObjectKey]:
        """Current keys in order, within ``namespace``, strictly after ``after``."""
        keys = self._keys.get(resource, [])
        low = 0
        if namespace is not None:
            low = bisect.bisect_left(keys, (namespace, ""))
        if after is not None:
            low = max(low, bisect.bisect_right(keys, after))
        for index in range(low, len(keys)):
            key = keys[index]
            if namespace is not None and key[0] != namespace:
                return
            yield key

    def count(self, resource: ResourceKey, namespace: str | None = None,
              after: ObjectKey | None = None) -> int:
        """How many keys are in ``namespace`` after ``after``: two bisects, no scan."""
        keys = self._keys.get(resource, [])
        low, high = 0, len(keys)
        if namespace is not None:
            low = bisect.bisect_left(keys, (namespace, ""))
            high = bisect.bisect_left(keys, (namespace + "\x00", ""))
        if after is not None:
            low = max(low, bisect.bisect_right(keys, after))
        return max(0, high - low)

    def compacted(self, resource: ResourceKey, rv: int) -> bool:
        """True when the state at ``rv`` can no longer be rebuilt (410 Expired)."""
        return rv > self.rv or self.too_old(resource, rv)

    def changed_since(self, resource: ResourceKey, rv: int) -> dict[ObjectKey, Body | None]:
        """key -> its state at ``rv`` (None: it did not exist) for every key written after ``rv``.

        Walks the retained history backwards until ``rv``: a cost bounded by the window, not by
        the number of objects. The caller checks :meth:`compacted` first.
        """
        before: dict[ObjectKey, Body | None] = {}
        for event in reversed(self._history.get(resource, ())):
            if event.rv <= rv:
                break
            meta = event.obj["metadata"]
            # Walking backwards, the last assignment is the earliest event's "before" state.
            before[(meta.get("namespace", ""), meta["name"])] = event.old
        return before

    def snapshot(self, resource: ResourceKey, namespace: str | None, *, rv: int,
                 after: ObjectKey | None = None) -> tuple[Iterator[Body], int]:
        """Objects as they were at ``rv``, in key order after ``after``, and how many there are.

        The current objects with the changes since ``rv`` undone; ``rv`` equal to the current
        version costs nothing extra.
        """
        bucket = self._objects.get(resource, {})
        undone = self.changed_since(resource, rv) if rv < self.rv else {}
        total = self.count(resource, namespace, after)
        gone: list[ObjectKey] = []  # keys that existed at rv but not now
        for key, old in undone.items():
            if (namespace is not None and key[0] != namespace) or (after is not None and key <= after):
                continue
            now = key in bucket
            if old is None and now:
                total -= 1
            elif old is not None and not now:
                total += 1
                gone.append(key)
        gone.sort()

        def walk() -> Iterator[Body]:
            keys: Iterable[ObjectKey] = heapq.merge(self._key_range(resource, namespace, after), gone)
            for key in keys:
                if key in undone:
                    old = undone[key]
                    if old is not None:
                        yield old
                    continue
                obj = bucket.get(key)
                if obj is not None:
                    yield obj

        return walk(), total

    def namespaced_in(self, namespace: str) -> Iterator[tuple[ResourceKey, Body]]:
        for resource, bucket in list(self._objects.items()):
            for key, obj in list(bucket.items()):
                if key[0] == namespace:
                    yield resource, obj

    def resources(self) -> list[ResourceKey]:
        return list(self._objects)

    # -- writing ---------------------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, resource: ResourceKey, obj: Body, *, rv: int, event: str) -> None:
        """Store ``obj`` (its metadata.resourceVersion already set to ``rv``) and fan it out."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(resource, {})
        old = bucket.get(key)
        bucket[key] = obj
        if old is None:
            bisect.insort(self._keys.setdefault(resource, []), key)
        self._index(resource, key, old, obj)
        self._emit(resource, Event(event, rv, obj, old))

    def remove(self, resource: ResourceKey, obj: Body, *, rv: int) -> None:
        """Remove the object; ``obj`` is its final state, sent in the DELETED event."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.get(resource, {})
        old = bucket.pop(key, None)
        if old is not None:
            keys = self._keys[resource]
            del keys[bisect.bisect_left(keys, key)]
        self._index(resource, key, old, None)
        self._emit(resource, Event("DELETED", rv, obj, old))

    def drop_resource(self, resource: ResourceKey) -> list[Body]:
        """Forget a resource whose CRD went away (its watchers are closed)."""
        bucket = self._objects.pop(resource, {})
        self._keys.pop(resource, None)
        for key, obj in bucket.items():
            self._index(resource, key, obj, None)
        self._history.pop(resource, None)
        self._compacted.pop(resource, None)
        for watcher in self._watchers.pop(resource, set()):
            watcher.queue.put_nowait(("CLOSE", None))
        return list(bucket.values())

    def _index(self, resource: ResourceKey, key: ObjectKey, old: Body | None,
               new: Body | None) -> None:
        if old is not None:
            meta = old["metadata"]
            if meta.get("uid") and new is None:
                self.uids.pop(meta["uid"], None)
            for ref in meta.get("ownerReferences") or []:
                deps = self.dependents.get(ref.get("uid", ""))
                if deps is not None:
                    deps.discard((resource, key))
                    if not deps:
                        del self.dependents[ref.get("uid", "")]
        if new is not None:
            meta = new["metadata"]
            if meta.get("uid"):
                self.uids[meta["uid"]] = (resource, key)
            for ref in meta.get("ownerReferences") or []:
                self.dependents.setdefault(ref.get("uid", ""), set()).add((resource, key))

    def _emit(self, resource: ResourceKey, event: Event) -> None:
        self.writes += 1
        history = self._history.get(resource)
        if history is None:
            history = self._history[resource] = collections.deque()
        if len(history) >= self._history_size:
            self._compacted[resource] = history.popleft().rv
        history.append(event)
        for watcher in list(self._watchers.get(resource, ())):
            watcher.offer(event)
        for listener in self.listeners:
            listener(resource, event)

    # -- watching --------------------------------------------------------------------------
    def too_old(self, resource: ResourceKey, since: int) -> bool:
        return since < max(self._compacted.get(resource, 0), self._floor)

    def subscribe(self, resource: ResourceKey, namespace: str | None, matches: Matcher,
                  *, since: int | None) -> Watcher:
        """Register a watcher; with ``since``, first queue the retained events after it.

        No ``await`` happens here, so nothing can be written between the replay and the
        registration: the watcher sees every event after ``since`` exactly once.
        """
        watcher = Watcher(resource, namespace, matches)
        if since is not None:
            for event in self._history.get(resource, ()):
                if event.rv > since:
                    watcher.offer(event)
        self._watchers.setdefault(resource, set()).add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.resource)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.resource]

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def history_size(self) -> int:
        return sum(len(h) for h in self._history.values())

    # -- persistence -----------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "resourceVersion": self.rv,
            "objects": [
                {"resource": list(resource), "object": obj}
                for resource, bucket in self._objects.items() for obj in bucket.values()
            ],
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore a dump (no events: a fresh server has no watchers and an empty history)."""
        self.rv = max(self.rv, int(data.get("resourceVersion", 1)))
        for entry in data.get("objects", []):
            resource = tuple(entry["resource"])
            obj = entry["object"]
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self._objects.setdefault(resource, {})[key] = obj
            self._index(resource, key, None, obj)
        for resource, bucket in self._objects.items():
            self._keys[resource] = sorted(bucket)
        # Nothing before the restart can be replayed: resuming from it must relist.
        self._floor = self.rv
        # What was loaded lives as long as the server: out of the cyclic GC's sight, so a full
        # collection never walks 100,000 objects (a pause of a second on a busy machine).
        gc.collect()
        gc.freeze()
