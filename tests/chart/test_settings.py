"""The chart against the settings' declarations (ingest/config/settings.py): every variable it sets
is a declared setting, its values pass the declarations' type and bounds checks, and where it
restates a default it restates the service's."""
from __future__ import annotations

import pytest

from ingest.config import ENV, SETTINGS, Settings
from tests.chart.render import CREDENTIALS, EVERYTHING_ON, Manifest, config_map, of_kind, pod_specs, render

# Defaults the chart must choose itself, because they depend on the release.
RELEASE_SPECIFIC = {"INGEST_NAMESPACE", "INGEST_S3_ENDPOINT", "INGEST_WORKER_SECRET"}
# Defaults the chart chooses differently on purpose: on a cluster, logs go to a collector.
CLUSTER_DEFAULTS = {"INGEST_LOG_FORMAT": "json"}
DECLARED = {spec.env for spec in SETTINGS.values()}
# The service's own workloads (the optional MinIO StatefulSet reads MinIO's variables, not ours).
OURS = ("Deployment/ingest-api", "Deployment/ingest-operator")


@pytest.fixture(scope="module", params=["default", "everything-on"])
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(EVERYTHING_ON) if request.param == "everything-on" else render()


def test_config_map_holds_exactly_the_documented_settings(manifests: list[Manifest]) -> None:
    assert set(config_map(manifests)) == DECLARED - CREDENTIALS


def test_every_variable_the_chart_sets_is_a_declared_setting(manifests: list[Manifest]) -> None:
    for name in OURS:
        for container in pod_specs(manifests)[name]["containers"]:
            assert {env["name"] for env in container.get("env", [])} <= DECLARED, name
    for secret in of_kind(manifests, "Secret"):
        assert set(secret.get("data", {})) <= DECLARED, secret["metadata"]["name"]


def test_the_charts_values_pass_the_declarations_checks(manifests: list[Manifest]) -> None:
    """A value the service would refuse at start-up (a port out of range, `ture`) fails here first."""
    settings = Settings.from_env(config_map(manifests))
    assert settings.namespace == "ingest" and settings.log_format == "json"


def test_default_settings_are_the_services_defaults() -> None:
    """Values say what the service would do anyway, so the chart cannot drift from the declarations
    (a number rendered as 1.073741824e+09 would fail here)."""
    data = config_map(render())
    chosen = {"INGEST_WORKER_IMAGE", "INGEST_WORKER_SERVICE_ACCOUNT"}  # equal to the service's, for release "ingest"
    for var in ENV:
        if var.name in CREDENTIALS | RELEASE_SPECIFIC:
            continue
        assert data[var.name] == CLUSTER_DEFAULTS.get(var.name, var.default), var.name
    assert chosen <= data.keys()
