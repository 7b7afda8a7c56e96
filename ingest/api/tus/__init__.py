"""Resumable uploads: the tus 1.0.0 protocol under /uploads/, an upload being a job from its start.

`protocol` reads and writes the tus headers; `claims` is the PATCH lock on the IngestJob (CAS and
a lease); `parts` keeps the bytes as one S3 multipart upload plus checkpoints in staging;
`writer` streams one PATCH body into parts; `session` runs a PATCH from lock to commit; and
`handlers` are the endpoints. The upload's record itself (`status.tus`) is `ingest.resumable`,
shared with the operator, which expires abandoned uploads.
"""
from ingest.api.tus.handlers import collection_endpoint, upload_endpoint

__all__ = ["collection_endpoint", "upload_endpoint"]
