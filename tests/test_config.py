"""Settings: each declared once, read as before, and a bad one (a template that would let jobs
overwrite each other's files, a typo, a value out of bounds) refused when a component starts."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing

import pytest

from ingest.config import SETTINGS, ConfigError, MiB, Settings


@pytest.mark.parametrize(("name", "value"), [
    ("INGEST_ARCHIVE_KEY_TEMPLATE", "{subdir}/{name}"),     # two jobs would write the same keys
    ("INGEST_ARCHIVE_KEY_TEMPLATE", "files/{path}"),
    ("INGEST_METADATA_KEY_TEMPLATE", "metadata.json"),      # every job's document on one key
    ("INGEST_METADATA_KEY_TEMPLATE", "{job_id}/{name}.json"),
])
def test_templates_without_the_job_id_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"\{job_id\}"):
        Settings.from_env({name: value})


def test_the_defaults_keep_the_document_out_of_the_files_key_space() -> None:
    settings = Settings.from_env({})
    templates = (settings.archive_key_template, settings.metadata_key_template)
    assert templates == ("{job_id}/{subdir}/{name}", "{job_id}.metadata.json")


@pytest.mark.processes
@pytest.mark.parametrize("component", ["ingest.api", "ingest.operator", "ingest.worker"])
def test_a_component_refuses_to_start(component: str) -> None:
    env = dict(os.environ, INGEST_ARCHIVE_KEY_TEMPLATE="{subdir}/{name}")
    result = subprocess.run([sys.executable, "-m", component], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "archive key template '{subdir}/{name}' must contain {job_id}" in result.stderr.splitlines()[-1]


def test_every_default_reads_back_as_itself() -> None:
    """The README's default text, read as the variable would be, gives the declared default."""
    for spec in SETTINGS.values():
        if spec.env != "INGEST_NAMESPACE":  # empty means "the Pod's own namespace"
            assert spec.parse(spec.text) == spec.default, spec.env


def test_every_field_is_declared_once_with_the_type_of_its_default() -> None:
    hints = typing.get_type_hints(Settings)
    assert list(SETTINGS) == [field.name for field in dataclasses.fields(Settings)]
    assert len({spec.env for spec in SETTINGS.values()}) == len(SETTINGS)
    for name, spec in SETTINGS.items():
        assert isinstance(spec.default, typing.get_origin(hints[name]) or hints[name]), name
        assert spec.help.endswith("."), name  # one sentence (or more) that documents it


@pytest.mark.parametrize(("name", "value", "message"), [
    ("INGEST_PART_SIZE", "16M", "INGEST_PART_SIZE must be an integer, not '16M'"),
    ("INGEST_PART_SIZE", "1048576", "INGEST_PART_SIZE must be at least 5242880, not '1048576'"),
    ("INGEST_API_PORT", "80660", "INGEST_API_PORT must be at most 65535, not '80660'"),
    ("INGEST_LEASE_SECONDS", "inf", "INGEST_LEASE_SECONDS must be a finite number, not 'inf'"),
    ("INGEST_S3_SECURE", "ture", "INGEST_S3_SECURE must be true or false, not 'ture'"),
    ("INGEST_WORKER_MODE", "pods", "INGEST_WORKER_MODE must be one of pool, pod, not 'pods'"),
    ("INGEST_LOG_LEVEL", "verbose", "INGEST_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("INGEST_ARCHIVE_KEY_TEMPLATE", "{name}", "INGEST_ARCHIVE_KEY_TEMPLATE: archive key template '{name}' must"),
])
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: value})
    assert str(refused.value).startswith(message)


def test_values_are_read_as_before() -> None:
    settings = Settings.from_env({
        "INGEST_MOVE_ROOTS": "/a::/b/{user}", "INGEST_ADMIN_USERS": " ann, bo ,,", "INGEST_WORKER_MODE": "POD",
        "INGEST_LOG_LEVEL": "debug", "INGEST_S3_SECURE": "Yes", "INGEST_MOVE_REMOVE_SOURCES": "",
        "INGEST_AUTH_OIDC_ISSUER": "https://id.example/", "INGEST_POOL_MIN": "7", "INGEST_POOL_MAX": "2",
        "INGEST_JOB_RETENTION_DAYS": "0.5", "INGEST_NAMESPACE": "science",
    })
    assert settings.move_roots == ("/a", "/b/{user}") and settings.admin_users == {"ann", "bo"}
    assert (settings.worker_mode, settings.log_level, settings.s3_secure) == ("pod", "DEBUG", True)
    assert settings.move_remove_sources is False  # an empty flag is off, as it always was
    assert settings.auth_oidc_issuer == "https://id.example" and settings.pool_max == 7
    assert settings.job_retention_days == 0.5 and settings.namespace == "science"


def test_the_worker_gets_its_share_of_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_PART_SIZE", str(8 * MiB))
    monkeypatch.setenv("INGEST_S3_SECRET_KEY", "hidden")
    environment = Settings.from_env({"INGEST_NAMESPACE": "science"}).worker_environment()
    assert environment["INGEST_PART_SIZE"] == str(8 * MiB) and environment["INGEST_NAMESPACE"] == "science"
    assert not {"INGEST_S3_SECRET_KEY", "INGEST_API_PORT", "INGEST_AUTH_HEADER"} & environment.keys()
