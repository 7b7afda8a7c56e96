"""`python -m ingest.worker`: run one IngestJob's pipeline inside its worker Pod.

Exit 0 means the job's outcome is recorded (complete, failed by the bundle), or the job is no
longer this worker's (cancelled, retried, deleted): then it wrote nothing more and undid nothing.
Any other exit is a crash the operator may retry; the reason is written to the
termination-message file, which Kubernetes shows on the Pod and the operator copies into the job.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from ingest import kube, lifecycle, logs
from ingest.config import Settings
from ingest.memory import bound_malloc
from ingest.storage import Storage
from ingest.worker.pipeline import Worker

TERMINATION_LOG = "/dev/termination-log"
log = logging.getLogger("ingest.worker")


class Terminated(Exception):
    """SIGTERM: the Pod is being deleted (administrator FAILED, deadline, node drain)."""


def write_termination_message(message: str) -> None:
    path = Path(os.environ.get("INGEST_TERMINATION_LOG", TERMINATION_LOG))
    try:
        path.write_text(logs.redact(message)[-4000:])  # Kubernetes keeps at most 4 KiB; the job shows it
    except OSError:
        pass


def main() -> int:
    bound_malloc()
    settings = Settings.from_env()
    name = os.environ["INGEST_JOB_NAME"]
    logs.bind_process(logs.job_id_of_object(name))  # every line of this Pod is about its one job
    logs.setup_logging(settings)
    stop = threading.Event()
    signalled = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        signalled.set()
        stop.set()
        raise Terminated("the worker Pod was asked to stop (SIGTERM)")

    signal.signal(signal.SIGTERM, on_sigterm)
    client = kube.api_client()
    owner = lifecycle.Owner(attempt=int(os.environ.get("INGEST_ATTEMPT") or 0),
                            pod=os.environ.get("INGEST_POD_NAME") or "", uid=os.environ.get("INGEST_POD_UID") or "")
    worker = Worker(
        settings=settings, store=kube.JobStore(client, settings.namespace), storage=Storage(settings),
        client=client, name=name, owner=owner, stop=stop,
    )
    log.info("worker Pod %s (attempt %d) started for %s", owner.pod or "?", owner.attempt, name)
    try:
        worker.run()
    except Terminated as error:
        log.warning("stopped: %s", error)
        write_termination_message(str(error))
        return 143
    except Exception as error:
        if signalled.is_set():  # SIGTERM reached the copy threads first: the same stop, told plainly
            log.warning("stopped: the worker Pod was asked to stop (SIGTERM)")
            write_termination_message("the worker Pod was asked to stop (SIGTERM)")
            return 143
        write_termination_message(f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        log.exception("worker crashed; the operator decides whether to retry")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
