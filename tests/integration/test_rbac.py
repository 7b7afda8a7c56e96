"""The chart's RBAC, proven by the traffic of the whole integration run rather than guessed.

The Kubernetes API emulator records every request by user (each component's bearer token is its
ServiceAccount's user name). After every other integration test has run (`RUN_LAST`, see
tests/conftest.py), this module renders the chart and checks, per component, that each
(verb, group, resource, subresource) the component used is allowed by the Roles bound to its
ServiceAccount, and that the Roles allow nothing it did not use. The two explicit exceptions are
listed below with the reason for each.
"""
from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ingest.local.launcher import Stack
from tests.chart.render import NAMESPACE, Manifest, of_kind, render, rules_of
from tests.integration.bundles import bundle
from tests.integration.helpers import upload, wait_complete

pytestmark = pytest.mark.stack
RUN_LAST = True

Use = tuple[str, str, str, str]  # verb, API group, resource, subresource

# Rules a real cluster needs that the local run cannot exercise (none: the Lease verbs of two
# operator replicas are exercised by tests/integration/test_failover.py; the chart is rendered
# with two operator replicas so those rules are part of what is judged).
NOT_EXERCISED: dict[str, dict[Use, str]] = {}
# Requests the chart deliberately does not allow (none: the operator disables kopf's scanning).
DENIED: dict[str, dict[Use, str]] = {}
IGNORED_USERS = {"admin", "system:node:local", "system:anonymous", ""}


def expire_a_finished_job(api: httpx.Client, kubectl: Callable[..., Any]) -> None:
    """Retention is days long; age one finished job so the operator's sweeper deletes it now."""
    body, _ = bundle({"rbac/retention.txt": b"retention"})
    job_id = upload(api, body)["job_id"]
    assert wait_complete(api, job_id)["state"] == "OK"
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kubectl("patch", "ingestjob", f"ingest-{job_id}", "--subresource=status", "--type=merge",
            "-p", f'{{"status": {{"finishedAt": "{old}"}}}}')
    deadline = time.monotonic() + 60
    while kubectl("get", "ingestjob", f"ingest-{job_id}", check=False).returncode == 0:
        assert time.monotonic() < deadline, f"ingest-{job_id} was not deleted by retention"
        time.sleep(0.5)


def allowed(rules: list[dict[str, Any]], use: Use) -> list[dict[str, Any]]:
    verb, group, resource, subresource = use
    full = f"{resource}/{subresource}" if subresource else resource
    return [
        rule for rule in rules if group in rule["apiGroups"] and full in rule["resources"] and verb in rule["verbs"]
    ]


def granted(rules: list[dict[str, Any]]) -> set[Use]:
    return {
        (verb, group, *(resource.split("/", 1) + [""])[:2])
        for rule in rules for verb in rule["verbs"] for group in rule["apiGroups"] for resource in rule["resources"]
    }


def components(manifests: list[Manifest]) -> dict[str, str]:
    """ServiceAccount user name -> component, from the chart."""
    return {
        f"system:serviceaccount:{NAMESPACE}:{sa['metadata']['name']}": sa["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        for sa in of_kind(manifests, "ServiceAccount")
    }


def test_each_component_is_allowed_exactly_what_it_used(stack: Stack, api: httpx.Client,
                                                        kubectl: Callable[..., Any]) -> None:
    assert stack.namespace == NAMESPACE, "the chart is rendered for the stack's namespace"
    expire_a_finished_job(api, kubectl)
    log = httpx.get(f"{stack.kube_url}/_emulator/requests", timeout=30).json()
    manifests = render(settings={"operator.replicas": "2"}, crds=False)
    users = components(manifests)
    rules = {component: rules_of(manifests, user.rsplit(":", 1)[1]) for user, component in users.items()}
    assert not [rule for rule in sum(rules.values(), []) if "*" in str(rule)], "no wildcards in the chart's rules"

    used: dict[str, set[Use]] = {component: set() for component in rules}
    unknown = set()
    for entry in log["usage"]:
        if entry["user"] in users:
            used[users[entry["user"]]].add((entry["verb"], entry["group"], entry["resource"], entry["subresource"]))
        elif entry["user"] not in IGNORED_USERS:
            unknown.add(entry["user"])
    assert not unknown, f"identities the chart has no ServiceAccount for: {sorted(unknown)}"

    problems = []
    for component, uses in sorted(used.items()):
        denied = DENIED.get(component, {})
        exempt = NOT_EXERCISED.get(component, {})
        print(f"\n{component}: used {len(uses)} kinds of request")
        for use in sorted(uses):
            print(f"  {'DENIED ' if use in denied else ''}{use}")
            if use in denied:
                assert not allowed(rules[component],
                                   use), f"{component} {use} is listed as denied but the chart allows it"
            elif not allowed(rules[component], use):
                problems.append(f"{component} used {use}, which its Role does not allow")
            elif use in exempt:
                problems.append(f"{component} {use} is exercised now: remove it from NOT_EXERCISED")
        for use in sorted(set(denied) - uses):
            problems.append(f"{component} no longer makes the denied request {use}: remove it from DENIED")
        for use in sorted(granted(rules[component]) - uses):
            if use in exempt:
                print(f"  not exercised here, allowed for a real cluster: {use}: {exempt[use]}")
            else:
                problems.append(f"{component}'s Role allows {use}, which no test used")
    # Rules limited to resourceNames: every request the bounded raw log still holds must name one.
    for request in log["requests"]:
        component = users.get(request["user"])
        use = (request["verb"], request["group"], request["resource"], request["subresource"])
        matching = allowed(rules.get(component, []), use) if component else []
        if matching and all("resourceNames" in rule for rule in matching):
            if not any(request["name"] in rule["resourceNames"] for rule in matching):
                problems.append(f"{component} {use} named {request['name']!r}, outside the rule's resourceNames")
    assert not problems, "\n".join(problems)
