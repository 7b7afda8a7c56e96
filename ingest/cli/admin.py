"""`IngestCMD` (also `pacifica-ingest-cmd`): look at and act on IngestJobs as an operator.

It talks to the Kubernetes API with the usual rules ($KUBECONFIG or ~/.kube/config, in-cluster
when run in a Pod) and writes nothing but IngestJob status, exactly as `kubectl patch` would, so
the operator reacts to it the same way. Exit codes: 0 done, 1 failed (e.g. unknown job), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest import jobs, kube, lifecycle
from ingest.config import Settings


class CommandError(Exception):
    """A clear sentence for the operator; exit code 1."""


def find(store: kube.JobStore, job_id: int) -> dict[str, Any]:
    job = store.get(jobs.job_name(job_id))
    if job is None:
        raise CommandError(f"job ID {job_id} does not exist in namespace {store.namespace}.")
    return job


def set_status(store: kube.JobStore, job_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    job = find(store, job_id)
    written, _ = store.apply(jobs.job_name(job_id), lifecycle.admin_fields, fields=fields)
    return written or job


def command_job(store: kube.JobStore, args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.state is not None:
        fields["state"] = args.state
    if args.task is not None:
        fields["task"] = args.task
    if args.task_percent is not None:
        fields["taskPercent"] = args.task_percent
    if args.exception is not None:
        fields["exception"] = args.exception
    return jobs.state_document(set_status(store, args.job_id, fields))


def command_get(store: kube.JobStore, args: argparse.Namespace) -> dict[str, Any]:
    job = find(store, args.job_id)
    document = jobs.state_document(job)
    problems = (job.get("status") or {}).get("problems")
    if problems:  # every file a failed job found at fault: file, reason code, detail
        document["problems"] = problems
    return document


def command_list(store: kube.JobStore, args: argparse.Namespace) -> list[dict[str, Any]]:
    documents = sorted((jobs.state_document(job) for job in store.list()), key=lambda doc: doc["job_id"])
    if args.state:
        documents = [doc for doc in documents if doc["state"] == args.state]
    if args.incomplete:
        documents = [doc for doc in documents if not doc["complete"]]
    return documents


def command_cancel(store: kube.JobStore, args: argparse.Namespace) -> dict[str, Any]:
    job = find(store, args.job_id)
    if jobs.state_document(job)["complete"]:
        raise CommandError(
            f"job ID {args.job_id} is already complete ({job['status'].get('state')}); nothing to cancel."
        )
    written, changed = store.apply(jobs.job_name(args.job_id), lifecycle.cancel, reason=args.reason)
    if not changed:
        raise CommandError(f"job ID {args.job_id} completed meanwhile; nothing to cancel.")
    return jobs.state_document(written or job)


def command_retry(store: kube.JobStore, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run a FAILED job again from its staged bundle or move document: same job id, fresh attempts."""
    job = find(store, args.job_id)
    status = job.get("status") or {}
    if status.get("state") != jobs.FAILED:
        raise CommandError(
            f"job ID {args.job_id} is {status.get('state')}/{status.get('task')}; only FAILED jobs can be retried."
        )
    staged = job["spec"].get("staged") or {}
    if staged.get("size") is None:
        raise CommandError(f"job ID {args.job_id} never finished staging its upload; there is nothing to retry from.")
    if jobs.STAGED_REMOVED_ANNOTATION in (job["metadata"].get("annotations") or {}):
        raise CommandError(
            f"job ID {args.job_id}: its staged data was removed after the retention period; upload it again."
        )
    if lifecycle.Job.of(job).committing:
        raise CommandError(f"job ID {args.job_id}: the metadata service may already hold its transaction; "
                           "it is not sent twice. Check the metadata service, then upload again if it is missing.")
    written, changed = store.apply(jobs.job_name(args.job_id), lifecycle.retry,
                                   default_attempts=settings.worker_attempts)
    if not changed:
        raise CommandError(f"job ID {args.job_id} changed meanwhile; look at it again.")
    return jobs.state_document(written or job)


def namespace(given: str | None) -> str:
    """--namespace, else $INGEST_NAMESPACE, else the kubeconfig context's namespace, as kubectl does."""
    if given or os.environ.get("INGEST_NAMESPACE"):
        return given or os.environ["INGEST_NAMESPACE"]
    try:
        _, active = kubernetes.config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
        return (active.get("context") or {}).get("namespace") or ""
    except Exception:  # no kubeconfig: in-cluster rules apply
        return ""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="IngestCMD", description=__doc__.split("\n\n")[0])
    root.add_argument("--namespace",
                      help="namespace of the IngestJobs (default: $INGEST_NAMESPACE, the kubeconfig's, or default)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    job = commands.add_parser(
        "job",
        help="set a job's status fields (only those given)",
        description="Set a job's status fields, e.g. fail a stuck job. FAILED makes it complete; "
        "the operator then stops its worker.",
    )
    job.add_argument("--job-id", type=int, required=True)
    job.add_argument("--state", help="OK or FAILED (others are stored as given)")
    job.add_argument("--task", help="e.g. 'ingest files'")
    job.add_argument("--task-percent", type=float, help="0.0 to 100.0")
    job.add_argument("--exception", help="the reason, shown to the client")

    get = commands.add_parser("get", help="print a job's state document")
    get.add_argument("--job-id", type=int, required=True)

    listing = commands.add_parser("list", help="list jobs' state documents")
    listing.add_argument("--state", help="only jobs in this state (OK, FAILED)")
    listing.add_argument("--incomplete", action="store_true", help="only jobs that are not complete")

    retry = commands.add_parser("retry", help="re-run a FAILED job from its staged data (same job id)")
    retry.add_argument("--job-id", type=int, required=True)

    cancel = commands.add_parser("cancel", help="fail a running job now; its worker stops and its writes are undone")
    cancel.add_argument("--job-id", type=int, required=True)
    cancel.add_argument("--reason", default="cancelled by an administrator with IngestCMD")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # exits 2 on a usage error
    settings = Settings.from_env({**os.environ, "INGEST_NAMESPACE": namespace(args.namespace)})
    try:
        store = kube.JobStore(kube.api_client(), settings.namespace)
        handlers: dict[str, Callable[[kube.JobStore, argparse.Namespace], object]]
        handlers = {"job": command_job, "get": command_get, "list": command_list, "cancel": command_cancel}
        result: object
        if args.command == "retry":
            result = command_retry(store, args, settings)
        else:
            result = handlers[args.command](store, args)
    except CommandError as error:
        print(f"IngestCMD: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(f"IngestCMD: the Kubernetes API refused: {error.status} {error.reason}", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"IngestCMD: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
