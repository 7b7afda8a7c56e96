# One image for every component; the Helm chart picks the entry point per Deployment, and the
# operator starts worker Pods from the same image (INGEST_WORKER_IMAGE):
#   python -m ingest.api        the HTTP API (port 8066)
#   python -m ingest.operator   the kopf operator (liveness on port 8080)
#   python -m ingest.worker     one job's pipeline, in a worker Pod
# Build: docker build -t pacifica-ingest-k8s:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: a wheel of the project and a virtual environment holding it and its pinned
# dependencies (all of them ship binary wheels, so no compiler is needed even here).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY ingest ./ingest
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

# Final stage: the same Python, the virtual environment, nothing else (no pip, no compiler).
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
# `python` on PATH is the venv's: the worker Pod's command is ["python", "-m", "ingest.worker"].
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A numeric user, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8066 8080
CMD ["python", "-m", "ingest.api"]
