"""The short version of `make reliability`: faults under load on the session's stack."""
from __future__ import annotations

import pytest

from benchmarks.reliability import run
from ingest.local.launcher import Stack

pytestmark = pytest.mark.stack


def test_faults_under_load_leave_every_job_in_a_known_state(stack: Stack) -> None:
    report = run(stack, clients=10, bundles=30, faults=True, duration=20, outage=4, wait_seconds=180)
    print("\n".join(report.lines()))
    assert report.accepted > 0 and report.completed > 0
    assert report.stuck == [] and report.duplicate_job_ids == 0 and report.duplicate_file_ids == 0
    assert report.orphan_objects == [] and report.mismatched_jobs == [] and report.two_writers == []
    # The infrastructure faults always happen; a worker kill needs a worker running at that moment.
    expected = ["operator killed", "api killed",
                "Kubernetes API stopped"] + ([] if stack.external else ["object store stopped"])
    for fault in expected:  # an external object store is not ours to stop
        assert any(done.startswith(fault) for done in report.faults), report.faults
