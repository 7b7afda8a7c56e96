"""Settings that would let jobs overwrite each other's files are refused when a component starts."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ingest.config import Settings


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
