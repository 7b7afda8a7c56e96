"""The Dockerfile, checked without a container engine: its stages, its user, and that every
entry point it names (and every command the chart and the operator give a container) is a module
of the project that starts in the virtual environment."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ingest.config import Settings
from ingest.operator.podspec import worker_pod
from tests.chart.render import REPO, pod_specs, render

DOCKERFILE = (REPO / "Dockerfile").read_text()
ENTRY_POINTS = {"ingest.api", "ingest.operator", "ingest.worker"}


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[start:]


def test_the_dockerfile_names_the_three_entry_points() -> None:
    named = set(re.findall(r"python -m (ingest\.[a-z_.]+)", DOCKERFILE))
    (cmd,) = [json.loads(arg) for op, arg in instructions() if op == "CMD"]
    assert named == ENTRY_POINTS and cmd == ["python", "-m", "ingest.api"]


def test_every_container_command_is_an_entry_point() -> None:
    job = {"metadata": {"name": "ingest-1", "uid": "u"}, "spec": {"jobId": 1}}
    commands = [worker_pod(job, Settings.from_env({}), 1)["spec"]["containers"][0]["command"]]
    commands += [spec["containers"][0]["command"] for name, spec in pod_specs(render()).items() if "minio" not in name]
    for command in commands:
        assert command[:2] == ["python", "-m"] and command[2] in ENTRY_POINTS, command


@pytest.mark.processes
def test_every_entry_point_starts_in_the_venv() -> None:
    """Importing `X.__main__` runs every import the process needs; `main` is what `-m` calls."""
    for module in sorted(ENTRY_POINTS):
        probe = f"import {module}.__main__ as entry; assert callable(entry.main)"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{module}: {result.stderr}"
    result = subprocess.run([sys.executable, "-m", "ingest.operator", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--lease" in result.stdout and "--liveness" in result.stdout


def test_the_final_stage_is_the_venv_on_a_plain_python_as_a_numeric_non_root_user() -> None:
    stage = final_stage()
    assert [arg for op, arg in stage if op == "FROM"] == ["${PYTHON_IMAGE}"]
    assert not [arg for op, arg in stage if op == "RUN"], "the final stage installs nothing (no compilers, no pip)"
    assert ("COPY", "--from=build /opt/venv /opt/venv") in stage
    assert re.search(r"PATH=/opt/venv/bin:\$PATH", dict(stage)["ENV"])
    uid, _, gid = dict(stage)["USER"].partition(":")
    chart = pod_specs(render())["Deployment/ingest-api"]["securityContext"]
    assert (int(uid), int(gid)) == (chart["runAsUser"], chart["runAsGroup"]) and int(uid) > 0


def test_the_build_context_is_only_the_package() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[:4] == ["*", "!pyproject.toml", "!README.md", "!ingest/"]
