"""Logging set-up shared by every process: one line per event, tagged with its job, never a secret.

`INGEST_LOG_FORMAT=text` (the default, for `make run`) writes
`<time> <LEVEL> <logger>: <message> job_id=N`; `json` writes one JSON object per line
(`time`, `level`, `logger`, `message`, `job_id`, `exception`) for a cluster's log pipeline. Every
logger - ours, uvicorn's, kopf's, the SDKs' - goes through the one root handler, so they all
follow the format.

Which job a line is about comes, in order, from `extra={"job_id": N}`, from the job bound to the
current context (`bind_job`/`job`: an API request or an operator handler, inherited by
`asyncio.to_thread`), from the process (`bind_process`: a worker Pod is one job), or from the
object kopf logs about. A redacting filter on the handler is the safety net for secrets: the
values registered with `add_secrets` (the S3 secret key, the API's bearer tokens) and anything
shaped like a credential (Authorization headers, bearer tokens, S3 signatures) are replaced before
a line is written, tracebacks included.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from ingest.config import Settings

REDACTED = "[REDACTED]"
_JOB_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("ingest_job_id", default=None)
_process_job_id: int | None = None
_secrets: set[str] = set()
_OBJECT_NAME = re.compile(r"^ingest-(\d+)(?:-worker-\d+)?$")
_CREDENTIALS = (
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z0-9-]+\s+)?)[^\"'\s,]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(signature=)[0-9a-f]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)((?:secret[_-]?(?:access[_-]?)?key|password|token)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,&;]+"),
     r"\1" + REDACTED),
)


def bind_job(job_id: int | None) -> None:
    """Tag the rest of this context's lines with `job_id` (an API request's task: it ends with the request)."""
    _JOB_ID.set(job_id)


@contextlib.contextmanager
def job(job_id: int | None) -> Iterator[None]:
    """Tag the lines logged inside the block (an operator handler, one job of a sweep)."""
    token = _JOB_ID.set(job_id)
    try:
        yield
    finally:
        _JOB_ID.reset(token)


def bind_process(job_id: int | None) -> None:
    """Tag every line of this process, from every thread: a worker Pod works for one job."""
    global _process_job_id
    _process_job_id = job_id


def job_id_of_object(name: str | None) -> int | None:
    """The job an IngestJob or worker Pod name belongs to."""
    found = _OBJECT_NAME.match(name or "")
    return int(found.group(1)) if found else None


def add_secrets(values: Iterable[str]) -> None:
    """Values that must never be written (short ones would redact ordinary words, and are not secrets)."""
    _secrets.update(value for value in values if value and len(value) >= 6)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


class JobContext(logging.Filter):
    """Sets `record.job_id` (None when the line is about no job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            ref = getattr(record, "k8s_ref", None)
            record.job_id = (
                _JOB_ID.get() or _process_job_id
                or (job_id_of_object(ref.get("name")) if isinstance(ref, dict) else None)
            )
        return True


class Redact(logging.Filter):
    """Replace secrets in the message and the traceback before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        return f"{line} job_id={job_id}" if job_id is not None else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        document: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            document["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=False, default=str)


def setup_logging(settings: Settings) -> None:
    """The root handler every logger propagates to: level, format, job tags, redaction."""
    add_secrets([settings.s3_secret_key])
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContext())
    handler.addFilter(Redact())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, settings.log_level, logging.INFO))
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
