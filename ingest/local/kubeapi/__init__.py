"""A Kubernetes API server emulator for the local stack and the tests.

There is no cluster on our machines, so the local stack serves the Kubernetes API itself, and
kopf, kubectl and the ``kubernetes`` client talk to it unchanged. It is strict where a real API
server is strict (schema validation and pruning, status isolation, resourceVersion conflicts,
finalizers, garbage collection, watches with bookmarks), because a lenient emulator lets tests
pass that would fail on a cluster.

Layers, each one module, dependencies pointing down:

- ``server``      HTTP: URL parsing, verbs, content types, watch streams (Starlette/uvicorn)
- ``cluster``     the rules of each verb (what a write may change and what follows from it)
- ``discovery``   discovery documents, /version, /openapi/v3, Tables for ``kubectl get``
- ``schema``      structural-schema prune/default/validate for custom resources
- ``patching``    merge, JSON, strategic-merge and apply patches
- ``selectors``   label and field selectors
- ``store``       objects, resourceVersions, watch fan-out with a bounded history
- ``resources``   the registry of served resources (built-ins and CRD-backed)
- ``requestlog``  who called what (GET /_emulator/requests)
- ``persistence`` ``--data FILE`` snapshots
- ``errors``      ``kind: Status`` errors

Run it with ``python -m ingest.local.kubeapi --host 127.0.0.1 --port PORT --crds DIR``.
Nothing in production imports this package.
"""
