"""The chart's share of "nobody can forge a user": header mode only behind a NetworkPolicy that admits the proxy."""
from __future__ import annotations

from tests.chart.render import CHART, helm, named, render

PROXY = "networkPolicy.apiFrom[0].podSelector.matchLabels.app"


def test_header_mode_needs_trusted_proxies_and_a_network_policy() -> None:
    result = helm("template", "ingest", str(CHART), "--set", "auth.header=X-Http-Authed-User")
    assert result.returncode != 0 and "auth.trustedProxies" in result.stderr
    result = helm("template", "ingest", str(CHART), "--set", "auth.header=X-Http-Authed-User",
                  "--set", "auth.trustedProxies={10.42.0.0/16}")
    assert result.returncode != 0 and "networkPolicy.apiFrom" in result.stderr


def test_header_mode_admits_only_the_proxy() -> None:
    manifests = render(settings={"auth.header": "X-Http-Authed-User",
                                 "auth.trustedProxies": "{10.42.0.0/16,10.43.0.0/16}",
                                 "networkPolicy.enabled": "true", PROXY: "oauth2-proxy"})
    data = named(manifests, "ConfigMap", "ingest-config")["data"]
    assert data["INGEST_AUTH_TRUSTED_PROXIES"] == "10.42.0.0/16,10.43.0.0/16"
    policy = named(manifests, "NetworkPolicy", "ingest-api")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http"}],
                                          "from": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]}]


def test_oidc_per_user_roots_and_s3_sources_reach_the_settings() -> None:
    data = named(render(settings={"auth.oidc.issuer": "https://login.example.org/realms/lab",
                                  "auth.oidc.audience": "ingest",
                                  "move.enabled": "true", "move.perUser": "true",
                                  "move.s3Sources": "{instruments/outbox,shared}"}),
                 "ConfigMap", "ingest-config")["data"]
    assert (data["INGEST_AUTH_OIDC_ISSUER"], data["INGEST_AUTH_OIDC_AUDIENCE"],
            data["INGEST_AUTH_OIDC_USER_CLAIM"]) == (
        "https://login.example.org/realms/lab", "ingest", "sub")
    assert data["INGEST_MOVE_ROOTS"] == "/move/{user}"
    assert data["INGEST_MOVE_S3_SOURCES"] == "instruments/outbox,shared"
